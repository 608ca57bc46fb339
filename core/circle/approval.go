package circle

import (
	"crypto/ecdh"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/remora-p2p/remora/core/identity"
)

// PendingTTL is how long a join request waits for an admin's approval
// before it expires (the joiner is then told the invite expired).
const PendingTTL = 24 * time.Hour

// maxPendingPerInvite bounds the requests one invite can hold: an invite
// that more devices answer than that has leaked.
const maxPendingPerInvite = 8

// ErrNoPending means no join request of that device waits for approval.
var ErrNoPending = errors.New("circle: no join request of that device is waiting for approval")

// PendingRequest is a join request waiting for an admin, as shown to the
// admin: who asks, through which channel, since when, and the safety code
// both sides compare before the admin approves.
type PendingRequest struct {
	Invite     TokenID
	Joiner     peer.ID
	Name       string
	Channel    string
	Requested  time.Time // the joiner's clock
	Since      time.Time // when it arrived here
	Expires    time.Time // Since + PendingTTL
	SafetyCode string
}

// HoldJoin takes an authentic request that OpenJoin let through. A repeat
// from the admitted device, or the first request on an in-person invite, is
// approved at once (true: send the Welcome now). Any other request waits as
// pending for [Circle.ApproveJoin] or [Circle.DenyJoin]; a device asking
// again while it waits updates its request. At most 8 devices wait on one
// invite (more: ErrInviteUsed, the invite has leaked). Persist State.
func (c *Circle) HoldJoin(req *JoinRequest) (approved bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rec, ok := c.invites[req.TokenID]
	if !ok || req.token != rec.Token {
		return false, fmt.Errorf("%w (no such invite)", ErrInviteInvalid)
	}
	if req.Resend || rec.UsedBy == req.Joiner {
		return true, nil
	}
	if rec.UsedBy != "" || rec.Denied {
		return false, ErrInviteUsed
	}
	if rec.InPerson && len(rec.Pending) == 0 {
		rec.UsedBy = req.Joiner
		return true, nil
	}
	if p := rec.pendingOf(req.Joiner); p != nil {
		// Its join was restarted (perhaps with a rotated box key): the
		// newest request counts, the wait does not start over.
		p.Prekey, p.Name, p.Time = req.Prekey, req.Name, req.Time
		if req.Channel != "" {
			p.Channel = req.Channel
		}
		return false, nil
	}
	if len(rec.Pending) >= maxPendingPerInvite {
		return false, fmt.Errorf("%w: %d devices already asked with it (it has leaked: deny it)", ErrInviteUsed, len(rec.Pending))
	}
	rec.Pending = append(rec.Pending, &pendingRecord{Joiner: req.Joiner, Prekey: req.Prekey, Name: req.Name,
		Time: req.Time, Received: c.opts.Now(), Channel: req.Channel})
	return false, nil
}

// PendingJoins lists the requests waiting for approval, oldest first.
func (c *Circle) PendingJoins() []PendingRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.opts.Now()
	var out []PendingRequest
	for id, rec := range c.invites {
		for _, p := range rec.Pending {
			if !now.Before(p.Received.Add(PendingTTL)) {
				continue
			}
			out = append(out, PendingRequest{Invite: id, Joiner: p.Joiner, Name: p.Name, Channel: p.Channel, Requested: p.Time,
				Since: p.Received, Expires: p.Received.Add(PendingTTL), SafetyCode: Fingerprint(rec.Token, c.Self(), c.boxOf(rec), p.Joiner, p.Prekey.Public)})
		}
	}
	slices.SortFunc(out, func(a, b PendingRequest) int { return a.Since.Compare(b.Since) })
	return out
}

// boxOf is the box key the invite named. Called with c.mu held.
func (c *Circle) boxOf(rec *inviteRecord) *ecdh.PublicKey {
	if k, err := ecdh.X25519().NewPublicKey(rec.Box); err == nil {
		return k
	}
	return c.keys.Current().Public
}

// ApproveJoin approves the pending request of joiner (admins only): its
// invite is used by that device from now on. It returns the request, ready
// for [Circle.Welcome], and the other requests on the same invite, to be
// refused with ErrInviteUsed. Persist State.
func (c *Circle) ApproveJoin(joiner peer.ID) (*JoinRequest, []*JoinRequest, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.log.Roster().IsAdmin(c.Self()) {
		return nil, nil, fmt.Errorf("circle %s: approve: %w: only admins approve joins (an admin signs the addition)", c.log.circle, ErrUnauthorized)
	}
	rec, p := c.findPending(joiner)
	if p == nil {
		return nil, nil, fmt.Errorf("circle %s: approve %s: %w", c.log.circle, joiner, ErrNoPending)
	}
	rec.UsedBy = joiner
	var others []*JoinRequest
	for _, o := range rec.Pending {
		if o != p {
			others = append(others, rec.request(o))
		}
	}
	rec.Pending = nil
	return rec.request(p), others, nil
}

// DenyJoin refuses the pending request of joiner. Denial is final for its
// invite: every request waiting on it is returned, to be refused with
// ErrInviteDenied, and later ones are refused too. Persist State.
func (c *Circle) DenyJoin(joiner peer.ID) ([]*JoinRequest, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rec, p := c.findPending(joiner)
	if p == nil {
		return nil, fmt.Errorf("circle %s: deny %s: %w", c.log.circle, joiner, ErrNoPending)
	}
	rec.Denied = true
	var out []*JoinRequest
	for _, o := range rec.Pending {
		out = append(out, rec.request(o))
	}
	rec.Pending = nil
	return out, nil
}

// ExpirePending drops requests that waited PendingTTL and returns them, to
// be refused with ErrInviteExpired. Persist State when it returns any.
func (c *Circle) ExpirePending() []*JoinRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.opts.Now()
	var out []*JoinRequest
	for _, rec := range c.invites {
		kept := rec.Pending[:0]
		for _, p := range rec.Pending {
			if now.Before(p.Received.Add(PendingTTL)) {
				kept = append(kept, p)
			} else {
				out = append(out, rec.request(p))
			}
		}
		rec.Pending = kept
	}
	return out
}

// findPending returns the newest live request of joiner. Called with c.mu held.
func (c *Circle) findPending(joiner peer.ID) (*inviteRecord, *pendingRecord) {
	now := c.opts.Now()
	var rec *inviteRecord
	var found *pendingRecord
	for _, r := range c.invites {
		if p := r.pendingOf(joiner); p != nil && now.Before(p.Received.Add(PendingTTL)) && (found == nil || p.Received.After(found.Received)) {
			rec, found = r, p
		}
	}
	return rec, found
}

func (r *inviteRecord) request(p *pendingRecord) *JoinRequest {
	return &JoinRequest{TokenID: r.Token.ID(), Time: p.Time, Joiner: p.Joiner, Prekey: p.Prekey, Name: p.Name, Channel: p.Channel, token: r.Token}
}

// ID names the invite this join answers (the token ID, in hex).
func (p *PendingJoin) ID() string { return p.Invite.Token.ID().String() }

// Self is the joining device.
func (p *PendingJoin) Self() peer.ID { return p.self }

type pendingJoinJSON struct {
	Invite string  `json:"invite"`
	Self   peer.ID `json:"self"`
	Prekey []byte  `json:"prekey"`
}

// MarshalBinary encodes the joiner's side of a join, so a daemon that
// restarts keeps waiting for the welcome. It holds the invite's token: keep
// it with the other secrets.
func (p *PendingJoin) MarshalBinary() ([]byte, error) {
	return json.Marshal(pendingJoinJSON{Invite: p.Invite.String(), Self: p.self, Prekey: p.prekey.Marshal()})
}

// ParsePendingJoin decodes what MarshalBinary wrote.
func ParsePendingJoin(b []byte) (*PendingJoin, error) {
	var j pendingJoinJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("invite: pending join: %w", err)
	}
	inv, err := ParseInvite(j.Invite)
	if err != nil {
		return nil, fmt.Errorf("invite: pending join: %w", err)
	}
	pk, err := identity.ParsePrekey(j.Prekey)
	if err != nil {
		return nil, fmt.Errorf("invite: pending join: %w", err)
	}
	if err := pk.Verify(j.Self); err != nil {
		return nil, fmt.Errorf("invite: pending join: %w", err)
	}
	return &PendingJoin{Invite: inv, self: j.Self, prekey: pk}, nil
}

// adminNames lists the admins' display names, for messages.
func adminNames(r *Roster) string {
	var names []string
	for _, m := range r.Members() {
		if m.Role == RoleAdmin {
			names = append(names, m.Name)
		}
	}
	return strings.Join(names, " or ")
}
