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
// # Mail format (version 2)
//
// One mail carries one or more items (a batch): a single-part
//
//	Content-Type: text/plain; charset=us-ascii
//	Content-Transfer-Encoding: 7bit
//
// mail with the Subject "message REF" (REF: 16 hex digits derived from the
// item keys, so a list's notice that quotes the subject names the mail), the
// header "X-Sync: 2" and a header "X-Sync-Items: N". The body is N
// blocks, each framed explicitly:
//
//	item I/N KEY DIGEST ENC
//	…the item wrapped at 76 characters…
//	end I/N
//
// DIGEST is base64url of the first 16 bytes of the item's SHA-256; ENC is
// "text" (the item's own bytes: printable ASCII without spaces, which core's
// armor is) or "b64" (standard base64 of any other item). Item lines have no
// spaces, so none looks like a first or last line. Text outside blocks (a
// list header right before the body, footers, parts a list adds) is
// ignored; a re-encoded body (quoted-printable, base64) and multiparts are
// decoded, and every text/plain part is read until all N blocks are found.
// An item whose bytes do not match the digest, or whose block is cut short
// or missing, is damaged: counted and reported, never delivered. Version 1
// (blocks ended by a "." line, no digest) is not read: a list header glued
// onto the first block turned into wrong data delivered as good.
//
// The Message-ID is <KEY@DOMAIN> for a mail with one item, and
// <b-HASH@DOMAIN> for a batch (HASH: SHA-256 of the item keys, truncated;
// DOMAIN: the sender's, as mail clients do); the header "X-Sync-Keys" lists the items' idempotency keys,
// in body order, so a retry can be detected with IMAP SEARCH. Idempotency
// keys are random strings chosen by core: nothing in the headers or the
// body names the circle or its members.
//
// # List verdicts
//
// In list mode Publish waits after sending until each mail came back
// through the list (distributed) or a notice quoting its reference arrived
// (held or rejected: the items' error), up to confirm_timeout; see
// verdict.go and docs/channel-mail.md.
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
