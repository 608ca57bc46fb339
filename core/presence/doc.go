// Package presence defines the presence record: a signed statement "peer P
// is reachable at these addresses until T".
//
// # Wire format
//
// A signed record is
//
//	version (1 byte, 1) ‖ body ‖ ed25519 signature (64 bytes)
//
// where the signature covers "remora/v1/presence" ‖ version ‖ body. The
// signature is verified over the bytes as received before the body is parsed;
// nothing is re-serialized to verify. The body is a sequence of fields, each a
// uvarint field number, a uvarint length and that many bytes; fields appear in
// ascending order, each at most once, except addresses (field 5), which may
// repeat. Unknown fields are skipped so later versions can add some.
//
//	1 peer ID (libp2p peer ID bytes)
//	2 sequence (uvarint): persisted and monotonic per peer; highest wins
//	3 issued-at (uvarint, Unix milliseconds)
//	4 expiry (uvarint, Unix milliseconds)
//	5 address: uvarint kind ‖ uvarint observers ‖ uvarint observed-at ms ‖ multiaddr bytes
//	6 NAT hint (uvarint)
//	7 relay offer (uvarint 0/1): the peer relays for its circles' members
//	8 box prekey (opaque bytes: the signed X25519 prekey from core/identity)
//	9 LAN hash (bytes): lets two members notice they share a LAN without
//	  publishing LAN addresses
//
// LAN addresses travel only over mDNS and peer exchange: [Record.ForChannel]
// strips them before a record is published to a channel.
//
// A record travels inside a sealed envelope on channels, so only circle
// members read it; its own signature lets members forward it by peer exchange.
package presence
