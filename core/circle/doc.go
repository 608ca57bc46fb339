// Package circle implements a circle's membership and keys: the signed
// roster log and its merge rule, epochs, the epoch secret used for routing
// tags, per-member sender keys, and invites. The full specification, with
// the reasons for each choice, is docs/circle.md; this comment is the
// summary a reader of the code needs.
//
// # Roster log
//
// The roster is a DAG of signed operations ([Op]): each names the heads of
// the log its author saw as parents, and its hash (SHA-256 of its wire bytes)
// is how children refer to it. Wire form: version (1) ‖ body ‖ ed25519
// signature (64) over "remora/v1/roster-op" ‖ version ‖ body; the body is
// uvarint field number ‖ uvarint length ‖ bytes, fields ascending, encoded
// canonically (a re-encoding must give the same bytes, so a hash names one
// operation). Unknown fields are rejected: all members must compute the same
// roster.
//
// # Merge
//
// Canonical order: topological, ties broken by the smaller op hash. An op is
// authorized when its author is an admin in the roster of the op's causal
// past (its ancestors), or when it is a member removing itself. The roster
// of a set of ops folds the authorized ops in canonical order, with
// remove-wins:
//
//   - an add or role change of X concurrent with an authorized remove of X
//     is void;
//   - any non-remove op whose author is concurrently removed is void;
//   - an op whose author is no longer in the folded roster is void unless
//     that removal is concurrent with it (two admins removing each other
//     at once are both removed).
//
// Concurrent channel and settings changes resolve by canonical order.
//
// # Epochs and keys
//
// The epoch is SHA-256 over the circle ID and each member's peer ID and
// the hash of the add that made it a member: it changes whenever who holds
// keys changes. The epoch secret ([EpochSecret]) is derived from the
// creator's root secret and one fresh contribution per remove op; it keys
// routing tags, sender hints and board names only. Each member owns a
// chain key per epoch, hash-ratcheted daily and handed to the others in
// [KeyMsg] messages the node seals in direct envelopes. Nothing is sent
// under an old epoch; an old epoch's envelopes are accepted only from a
// current member within the grace window.
//
// # Invites
//
// An [Invite] carries a single-use token, an expiry of at most 24 hours,
// the inviter's peer ID and box key and one rendezvous hint. The join
// request is sealed to the inviter (HPKE) and MACed with the token; the
// welcome (roster log, root secret, contributions) is sealed to the joiner
// and MACed with the token; both sides compare a [Fingerprint].
package circle
