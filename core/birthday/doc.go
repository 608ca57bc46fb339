// Package birthday opens a UDP path between a node behind a symmetric NAT
// (endpoint-dependent mapping: a new public port per destination, the
// "hard" side) and a node whose NAT maps endpoint-independently (one
// public port for all destinations, the "easy" side), by birthday-paradox
// probing as Tailscale describes it.
//
// The hard side opens Ports sockets and sends from each a few packets to
// the easy side's public address: its NAT makes a mapping, at a random
// public port, for each socket (the easy side's NAT drops the packets; they
// only open the hard side's mappings). The easy side then sends at most
// Probes packets from its public address to random ports of the hard
// side's public IP. A probe that lands on one of the Ports mappings passes
// the hard side's NAT (it is a reply to that socket's packets) and reaches
// the socket, and the easy side's NAT now admits packets from that port.
// With 256 mappings among ~64,000 ports, 2,048 probes miss all of them with
// probability (1 - 256/64512)^2048 ≈ 0.03 %.
//
// Every packet (opening and probe) is 22 bytes:
//
//	0x00 'r' 'b' 'p' ‖ token (16 bytes) ‖ port (2 bytes, big endian)
//
// The first byte has QUIC's fixed bit clear, so a QUIC stack sharing the
// easy side's socket hands the packets to its non-QUIC reader instead of
// parsing them. The token ties a probe to one attempt; port is the public
// port the probe was sent to (0 in opening packets), which tells the hard
// side which public port its winning socket has.
//
// Bounds, so that it never looks like a scan: Ports sockets, OpenRepeat
// packets each, Probes probes at most, one every ProbeEvery, one attempt per
// peer per a caller-chosen interval. The package moves bytes only; the
// caller (core/transport) agrees the token and addresses over a live path
// and builds the connection on the winning port.
package birthday
