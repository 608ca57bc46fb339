// Package mailbox is friends' mailboxes: members keep sealed envelopes for
// a member who is offline, and hand them over when it connects. It also
// wakes sleeping devices that asked for it.
//
// # Who learns what
//
// An envelope for a mailbox is always a direct envelope (HPKE to the
// recipient's box prekey, package envelope), sealed for the channel ID
// [Channel], even for a group message: a broadcast envelope would be
// readable by the friend, who holds the sender's chain key. The friend
// keeps it opaque and learns the recipient's tag, the size, the expiry the
// sender asked for, and who handed it in (the live connection says so). A
// tag is HMAC-SHA256(HKDF-Expand(epoch secret, "remora/v1/mailbox-tag"),
// u8 len ‖ recipient peer ID)[:16]: stable within an epoch, computable only
// by members — who can also tell which member it names, as they must to
// hand the envelope over.
//
// # Frames
//
// Mailbox frames travel on the live path (/remora/msg/1, whose ACK means
// the receiver handled the frame; its NACK carries a reason). Each is
// version (1) ‖ type (1) ‖ body, integers big endian:
//
//	0x20 deposit   tag (16) ‖ expiry (8, Unix ms) ‖ envelope      sender → friend
//	0x21 deliver   envelope                                       friend → recipient
//	0x22 release   uvarint count (1..4096) ‖ IDs (16 each)        recipient or sender → friend
//	0x23 register  JSON {"endpoint": URL, "channels": bool}       sleeping device → friend
//
// The first byte is an envelope's version, the second never one of its
// suites nor a join frame's type (0x10–0x13), so a receiver tells them
// apart before opening anything.
//
// # Flow
//
// The sender's outbox tries the live path, then the channels, and hands
// each envelope for a recipient it could not reach to up to N friends it
// has a live path to (default 2), recording each deposit (holder, ID) with
// the outbox entry. A friend answers a deposit with ACK once the envelope
// is stored durably, or NACKs "mailbox full" (its byte quota is spent) or
// "mailbox off" (it keeps nothing for others); the sender leaves that
// friend alone for a while and tries others on its next sweep. The entry
// stays in the outbox until the recipient's signed ack, so nothing is lost.
// A friend keeps an envelope until the earlier of the sender's expiry and
// its own limit.
//
// When the recipient connects to a friend, the friend hands over what it
// keeps for the recipient's tags (under every epoch in the grace window),
// oldest first, one deliver frame each; the recipient ACKs a delivery only
// once it stored the message (or dropped it as it would a channel's item),
// and the friend then deletes it. The recipient inserts the message into
// its inbox with the same dedupe as every other path, so a message that
// also came by a channel and from a second friend is seen once, and sends
// the sender a signed ack like for a channel copy. It then releases the
// envelope's ID at every member it is connected to; the sender, on the
// ack, releases its recorded deposits at their holders. A friend honours a
// release only from the envelope's recipient (by tag) or its depositor,
// and an ID is the SHA-256 of the envelope's bytes, so a member cannot
// guess or drop what it did not see. Copies at friends that neither side
// reaches are dropped at expiry; if one is handed over later, dedupe
// removes it.
//
// # Wake-ups
//
// A device that sleeps sends a register frame to the friends it connects
// to. When a deposit for it arrives at such a friend while it has no live
// path, the friend wakes it, at most once per interval (default a minute):
// an empty HTTP POST (RFC 8030 §5, TTL and Urgency headers, no payload) to
// the device's UnifiedPush endpoint, and/or, if it asked, an empty direct
// envelope of kind wake on each of the circle's push-capable channels
// (IMAP IDLE, Matrix /sync, Mastodon streaming), which the device's
// subscription sees at once. Neither names the message, the sender or the
// circle. A woken device dials its members and the mailboxes flow. An
// endpoint must be https (http only to a loopback host) and carry no
// credentials; a 404 or 410 drops it.
package mailbox
