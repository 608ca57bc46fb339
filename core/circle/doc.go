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
// The roster is a function of the set of ops a device holds, never of the
// order they arrived in or of their time fields (informational only): only
// the causal order counts (a is before b when b's author had seen a). A
// revocation of P ends P's authority: a remove of P (by an admin, or P
// leaving) ends membership and admin rights; a role change of P to member
// ends admin rights. Every op needs admin rights except create, leaving and
// publishing one's own prekey ([OpPrekey]), which need membership. An op
// counts when
//
//   - its author holds the rights it needs in the roster of the counted ops
//     before it, and
//   - no counted revocation of its author is concurrent with it, unless
//     both are revocations in one cycle (A removes B while B removes A: all
//     of a cycle count, remove-wins), or another admin, already an admin
//     before the op or before the revocation, built a counted op on it
//     without knowing the revocation (the remover's own removal, when it
//     saw the op, is such).
//
// So an admin's ops count only if they are causally before its removal (or
// endorsed that way): a removed admin cannot back-date ops by choosing old
// parents, and authority granted by a void op is void. Because the rule
// refers to itself it is computed as a fixed point (roster.go, evaluate). The
// roster folds the counted ops in canonical order (topological, ties by the
// smaller hash) with remove-wins on targets: an add, role change or prekey
// of X concurrent with a counted removal of X is void, a promotion
// concurrent with a counted demotion too. A member's prekey is the newest
// (by its signed creation time) of those counted. Concurrent channel and
// settings changes resolve by canonical order.
//
// An op whose parents have not arrived waits in the circle's state,
// bounded by bytes and age, while the member that sent it is asked for
// them ([MsgOpRequest]); it applies when they arrive.
//
// # Epochs and keys
//
// The epoch is SHA-256 over the circle ID and each member's peer ID and
// the hash of the add that made it a member: it changes whenever who holds
// keys changes. The epoch secret ([EpochSecret]) is derived from the
// creator's root secret and one fresh contribution per remove op; it keys
// routing tags, sender hints and board names only. Board names are derived
// from the same inputs without the epoch, so an add keeps them and a
// removal changes them. Each member owns a
// chain key per epoch, hash-ratcheted daily and handed to the others in
// [KeyMsg] messages the node seals in direct envelopes. After an add only,
// the members of the epoch before get it in one broadcast envelope under
// that epoch, sealed with the device's chain of it ([Circle.HandOutKey]),
// which they all hold and a newcomer does not; newcomers get direct ones.
// That is the one thing sent under an old epoch, and only while every
// member of it is still a member and no removal happened since (a removed
// member keeps the chains it had). An old epoch's envelopes are accepted
// only from a current member within the grace window.
//
// # Invites
//
// An [Invite] carries a single-use token, an expiry of at most 24 hours,
// the inviter's peer ID and box key and one rendezvous hint. The join
// request is sealed to the inviter (HPKE), MACed with the token and bound
// to the invite's lifetime. Holding the token is not membership: the
// request waits as pending ([Circle.HoldJoin]) until an admin, having
// compared the safety code ([Fingerprint]) with the joiner, approves it
// ([Circle.ApproveJoin]) or denies it, which voids the invite. Only then is
// the welcome (roster log, root secret, contributions) sealed to the joiner
// and MACed with the token. A used invite welcomes again only the device
// it admitted while that device is still a member, so a replayed request
// readmits nobody.
package circle
