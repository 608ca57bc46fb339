// Package lan finds circle members on the local network by mDNS (DNS-SD,
// RFC 6762/6763) without announcing anything that lets a stranger on the
// LAN recognise the same device on another network, or tell which circle
// it belongs to.
//
// # Where it runs
//
// A [Policy] decides per network interface: in [Auto] mode (the default)
// mDNS runs on interfaces that have a private IPv4 address (RFC 1918:
// 10/8, 172.16/12, 192.168/16) or an address in a network the user lists
// as private, and never on a network the user lists as public; [On] runs
// it on every multicast interface except public ones; [Off] never.
//
// # What it announces
//
// One DNS-SD service per allowed interface, type "_p2p._udp" (the type
// every libp2p node announces, so the service type does not single out
// this software), with:
//
//   - an instance name and a host name of 16 random base32 characters,
//     drawn afresh whenever the interface's addresses change and every
//     [Options.Rotate] (1 h): nothing in the names is derived from the
//     device, so two networks (or two hours) see unrelated names;
//   - an SRV port drawn at random with the names (the real ports are
//     inside the sealed entries);
//   - the interface's addresses in A/AAAA records (a LAN sees them anyway);
//   - TXT strings "s=" + base64url(nonce ‖ XChaCha20-Poly1305 ciphertext),
//     one per circle the node is in, padded with random strings of the
//     same length to at least [MinEntries], so the count does not tell
//     the circles apart either.
//
// Each sealed entry is, under a key only the circle's members hold
// (circle.EpochSecret.LANKey) and with associated data "remora/v1/lan":
//
//	version     1 byte (1)
//	issued at   8 bytes, Unix seconds, big endian
//	peer ID     1 byte length ‖ bytes
//	addresses   1 byte count ‖ (1 byte length ‖ multiaddr bytes)...
//
// The 24-byte nonce is random per entry, so the ciphertext changes with
// every announcement. A member opens an entry with its circles' current
// and grace-window keys; an entry that opens is a member's (or a replay
// of one, which is why entries older than [MaxAge] or from the future are
// dropped); the node still dials only roster members, and the libp2p
// handshake proves the peer ID.
//
// # What a stranger still learns
//
// That a device on this LAN runs this software (the service type is
// libp2p's, but the names, port and "s=" strings are not libp2p's form),
// though not which device or circle; its LAN addresses and its MAC
// address (a LAN sees those of every device); and, by connecting to a
// listening port it found by scanning, its peer ID: libp2p's handshake
// tells the responder's identity to any initiator. The announcement
// itself carries nothing constant per device.
package lan
