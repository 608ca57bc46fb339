// Package envelope is remora's one wire format: the sealed unit every
// channel and live path carries. docs/protocol.md specifies it byte by byte
// with test vectors; this comment is the summary a reader of the code needs.
//
// # Layout
//
// An envelope is
//
//	version (1) ‖ suite (1) ‖ routing tag (16) ‖ sender hint (8) ‖ nonce (24)   — the header, in clear
//	‖ [direct: HPKE encapsulated key (32, or 1120 for MLKEM768-X25519)]
//	‖ AEAD ciphertext of the fragment plaintext, with the header as associated data
//
// and the fragment plaintext is
//
//	message ID (16) ‖ index (2) ‖ count (2) ‖ slice length (4) ‖ slice ‖ zero padding
//
// where the slices of a message's fragments, joined in index order, are the
// signed message M followed by its ed25519 signature:
//
//	M = incarnation (8) ‖ sequence number (8) ‖ timestamp (8, Unix ms)
//	    ‖ expiry (8, Unix ms) ‖ kind (2) ‖ body
//
// All integers are big endian. The signature covers
//
//	"remora/v1/envelope" ‖ suite ‖ circle ID ‖ epoch ‖ mode
//	‖ [direct: u8 len ‖ recipient peer ID ‖ box-key ID]
//	‖ u8 len ‖ sender peer ID ‖ message ID ‖ count ‖ M
//
// The part before M is context the receiver already holds — the epoch whose
// tag key matched, the member whose hint matched, its own peer ID and the
// box key that opened the envelope — so it is bound without being carried or
// parsed; M is verified exactly as carried, before any field of it is read.
//
// # Routing without identifiers
//
// Nothing in clear names the circle, epoch or sender: the routing tag is
// HMAC-SHA256(tag key, u16 len ‖ channel ID ‖ nonce)[:16] and the sender
// hint HMAC-SHA256(hint key, u8 len ‖ sender ‖ nonce)[:8], both keyed by
// keys derived from the circle's epoch secret (NewEpochKeys) and fresh for
// every envelope. A receiver finds the epoch by trying each accepted epoch's
// tag key, and the sender by computing the hint of each member.
//
// # Modes
//
// Broadcast envelopes (SuiteBroadcast) are XChaCha20-Poly1305 under the
// sender's current message key, which package circle derives from the
// sender's per-epoch chain key (daily hash ratchet); the header's nonce is
// the AEAD nonce. Direct envelopes are HPKE (RFC 9180, crypto/hpke) base
// mode to the recipient's box prekey, info = "remora/v1/direct" ‖ circle ID
// ‖ box-key ID; the key ID is never carried: the recipient tries its current
// and previous prekeys.
//
// # Padding and fragments
//
// Each envelope is padded (zeros inside the AEAD, after the explicit slice
// length) to a bucket — 256 B, 512 B, … 64 KiB, then multiples of 64 KiB —
// capped by the route's MaxSize. A message that does not fit one envelope
// is split: every fragment is a complete envelope with its own nonce, tag,
// hint (and HPKE encapsulation), carrying a slice of M ‖ signature; the
// signature covers the message ID and fragment count, so the one signature
// authenticates the reassembled message. A Reassembler holds fragments
// within fixed Limits. For text channels, Armor.MaxEnvelope turns the
// channel's limit in characters into Route.MaxSize.
//
// # Opening and errors
//
// Open takes every key through the Keys interface (implemented by package
// circle over package identity's keys; package envelope imports neither)
// and classifies every failure with a sentinel inside an *OpenError:
// ErrNotForUs (ignore), ErrKeyNotYet (hold the raw envelope, retry when the
// sender's key arrives), ErrPending (a fragment was stored; not a failure),
// ErrNotMember, ErrForged, ErrMalformed, ErrUnsupported, ErrExpired,
// ErrFuture, ErrReplay (drop and count). Open never panics on any input
// (FuzzOpen) and never returns a message whose signature it did not verify
// against the roster's key for the sender.
//
// # Replay
//
// A message is accepted only while its timestamp is within
// [now − MaxAge − MaxSkew, now + MaxSkew] and now ≤ expiry + MaxSkew, so a
// dedupe set of (sender, message ID) — DedupeKey — needs to keep each entry
// only until Message.DedupeUntil. The node keeps it in its store, in the
// same transaction as the inbox insert; Window is an in-memory ReplayStore.
// Sequence numbers are signed and returned for gap detection only.
package envelope
