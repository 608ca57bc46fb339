// Package imap is the mail channel: an existing mail account or mailing list
// used as a remora rendezvous point and store-and-forward mailbox. It reads
// with IMAP (IDLE where offered, polling otherwise) and sends with SMTP
// submission, or with IMAP APPEND in the shared-mailbox mode.
//
// # Modes
//
//   - list: publish by SMTP to the list address; read the member's own
//     mailbox and accept only our mails that came through the list (List-Id).
//   - shared: one account the whole circle logs into; publish with IMAP
//     APPEND to a folder, no SMTP at all.
//   - direct: mail to members' own addresses (PublishItem.To); read the own
//     mailbox.
//
// # Mail format (version 1)
//
// One mail carries one or more items (a batch): a single-part
//
//	Content-Type: text/plain; charset=us-ascii
//	Content-Transfer-Encoding: 7bit
//
// mail with a neutral Subject ("message"), the header "X-Remora: 1" and a
// header "X-Remora-Items: N" (the number of items in the body). The body is
// N blocks, each the item's text wrapped at 76 characters and followed by a
// line holding a single ".". An item that is not printable ASCII without
// spaces (core sends armored text, so this is unusual) is carried as a block
// whose first line is "=b64" followed by its standard base64. Anything after
// the N-th block (a footer a list manager appends) is ignored; a list manager
// that re-encodes the body (quoted-printable, base64) or wraps it in a
// multipart with a footer part is handled: the first text/plain part is read.
//
// The Message-ID is <KEY@remora.invalid> for a mail with one item, and
// <b-HASH@remora.invalid> for a batch (HASH: SHA-256 of the item keys,
// truncated); the header "X-Remora-Keys" lists the items' idempotency keys,
// in body order, so a retry can be detected with IMAP SEARCH. Idempotency
// keys are random strings chosen by core: nothing in the headers or the
// body names the circle or its members.
//
// # Cursor
//
// The cursor is, per watched folder, (UIDVALIDITY, UID, index): every mail
// below UID is consumed, and the first index items of mail UID were
// delivered. A folder whose UIDVALIDITY changed makes Subscribe fail with
// sdk.CodeCursorInvalid; the host then rescans from a nil cursor and dedupes.
//
// # IDs
//
// An item's ID is "k:" followed by its idempotency key: PublishResult.ID and
// Delivery.ID agree, in every mailbox the mail reaches and across
// UIDVALIDITY changes. Mail whose keys cannot be read, and mail that is not
// ours (delivered with empty Data, moving only the cursor), has the ID
// "UIDVALIDITY:UID:INDEX:COUNT:FOLDER".
package imap
