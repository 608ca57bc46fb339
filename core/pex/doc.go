// Package pex is peer exchange: connected members keep each other up to
// date with the signed presence records they hold of the circle's members,
// so that a member who reaches one other member learns how to reach all of
// them, with no channel and no server.
//
// # Protocol
//
// A peer exchange is a broadcast envelope of kind peer-exchange (0x0009)
// sent on the live path to one member. Its body is a list of signed
// presence records (core/presence), each as
//
//	uvarint length ‖ signed record
//
// at most MaxRecords records and MaxBody bytes. Only records whose
// signature verifies, that have not expired, and whose subject is a member
// of the envelope's circle are accepted; the receiver verifies each one
// itself (the forwarder vouches for nothing), so a record can only ever
// say what its own subject signed.
//
// # When
//
// A node sends a member every record it holds of the members of the
// circles they share — its own full record (LAN addresses included)
// first — when the connection comes up; then, whenever it accepts a fresher
// record of a member (from any box) it sends that record to every
// connected member that has not had it; and on a jittered interval it sends
// each connected member its own record again and whatever the member has
// not had. Gossip tracks the highest sequence sent per (recipient,
// subject), so a record is never sent twice to the same member unless the
// connection was lost in between or the member refused the exchange (a
// NACK on the live path: it came too soon after the last one, and the
// records stay due); and it sends to one member at most once
// per MinGap, so a member changing its addresses quickly cannot make the
// circle flood. An exchange holds at most MaxRecords records; the next one
// to the same member goes on after the last subject the previous one
// carried, so in a circle larger than that every member's record gets its
// turn even while all of them are being renewed.
package pex
