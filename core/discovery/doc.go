// Package discovery finds peers. Each way of finding them is a Source
// ("box"): LAN mDNS, peer exchange, the persisted peer cache, every channel,
// DNS TXT records, a static web file, and last a preloaded signed list of
// volunteer relays. Discovery runs the sources, merges what they find, and
// keeps a per-box report: configured, reachable, what it found and when.
// docs/discovery.md says which boxes the daemon runs today.
//
// # Signed relay list
//
// The bootstrap list, the static web file and the embedded default share one
// format: UTF-8 text, one item per line, '#' starts a comment line.
//
//	remora-relays v1 seq=<uint> expires=<RFC 3339 time>
//	<multiaddr ending in /p2p/<peer ID>>
//	...
//
// It is signed with minisign (a detached signature, fetched from the same
// URL with ".minisig" appended). A list is accepted only if the signature
// verifies against a trusted key, it has not expired, and its sequence
// number is not lower than the highest one accepted before (no rollback).
//
// DNS TXT records carry hints only: "remora-relay=<multiaddr with /p2p/ID>".
// They need no signature because every connection authenticates the peer ID
// with libp2p's handshake; a forged record can only waste a dial.
package discovery
