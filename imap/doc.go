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
// # Mail format (version 3)
//
// Nothing in a mail is the same in every mail of a channel, and nothing
// names the software (docs/threat-model.md). A mail carries one or more
// items (a batch) and has only the header fields every mail has: From, To,
// Date, Subject, Message-ID and References. No MIME header: the body is
// text/plain in US-ASCII, 7bit, as RFC 2045 says of a mail without them.
//
// The Subject is the mail's mark, 32 hex digits: REF, 8 bytes derived from
// the item keys (so a retry of the same items has the same Subject, and a
// list's notice that quotes the subject names the mail), followed by the
// first 8 bytes of HMAC-SHA256(mark key, REF). The mark key is
// SHA-256("remora/v1/mail mark" ‖ 0x00 ‖ secret), where the secret is the
// host's sdk.SecretMarkKey (derived from the circle-wide channel ID, the
// same on every member's device), else "channel:" and the host's channel
// name. Only holders of the key tell a mark from random hex; a mail is ours
// when a word of its Subject (a list may add a tag or "Re:") is a mark.
//
// References lists the items' idempotency keys as <KEY@DOMAIN>, in body
// order, so a retry can be detected with IMAP SEARCH HEADER; their number
// is the number of items. The body is one block per item, each framed
// explicitly by the mark:
//
//	MARK I/N KEY DIGEST
//	…the item wrapped at 76 characters…
//	MARK I/N
//
// DIGEST is base64url of the first 16 bytes of the item's SHA-256. An item
// that is printable ASCII without spaces (core's armor) travels as it is,
// any other as standard base64; the reader takes the lines as the item if
// they match the digest, else their base64 decoding if that does. Item
// lines have no spaces, so none looks like a first or last line. Text
// outside blocks (a list header right before the body, footers, parts a
// list adds) is ignored; a re-encoded body (quoted-printable, base64) and
// multiparts are decoded, and every text/plain part is read until all N
// blocks are found. An item whose bytes do not match the digest, or whose
// block is cut short or missing, is damaged: counted and reported, never
// delivered.
//
// Earlier formats are not read: version 2 (headers X-Sync: 2, X-Sync-Items
// and X-Sync-Keys, Subject "message REF", blocks framed by "item" and
// "end") was the same in every mail; version 1 also let a list header glued
// onto the first block pass as item data. Their mails count as foreign.
//
// The Message-ID is <KEY@DOMAIN> for a mail with one item, and
// <HASH@DOMAIN> for a batch (HASH: 32 hex digits of SHA-256 of the item
// keys; DOMAIN: the sender's, as mail clients do). Idempotency keys are
// random strings chosen by core: nothing in the headers or the body names
// the circle or its members.
//
// # List verdicts
//
// In list mode Publish waits after sending until each mail came back
// through the list (distributed) or a notice quoting its mark arrived
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
