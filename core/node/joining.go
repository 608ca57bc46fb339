package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/core/circle"
	"github.com/remora-p2p/remora/core/delivery"
)

// States of a join of this device.
const (
	joinPending = "pending"
	joinJoined  = "joined"
	joinRefused = "refused"
)

// pendingJoin is a join this node requested: it waits for the inviter's
// welcome (after an admin's approval) or refusal until expires, across
// restarts (store bucket joins).
type pendingJoin struct {
	p       *circle.PendingJoin
	channel string // channel ID of the rendezvous
	started time.Time
	expires time.Time
	state   string
	circle  *circle.Circle
	err     error
	changed chan struct{} // closed when the state leaves pending
}

type joinRecord struct {
	Pending []byte    `json:"pending"`
	Channel string    `json:"channel"`
	Started time.Time `json:"started"`
	Expires time.Time `json:"expires"`
}

// ErrNoRendezvous means the joiner has no channel the invite names.
var ErrNoRendezvous = errors.New("node: join: no configured channel matches the invite's rendezvous hint")

// loadJoins restores the joins still waiting after a restart.
func (n *Node) loadJoins() error {
	recs, err := n.db.Joins()
	if err != nil {
		return fmt.Errorf("node: load joins: %w", err)
	}
	now := n.opts.Now()
	for id, raw := range recs {
		var r joinRecord
		var p *circle.PendingJoin
		if err = json.Unmarshal(raw, &r); err == nil {
			p, err = circle.ParsePendingJoin(r.Pending)
		}
		if err != nil || now.After(r.Expires) {
			n.db.DeleteJoin(id)
			continue
		}
		n.joins[id] = &pendingJoin{p: p, channel: r.Channel, started: r.Started, expires: r.Expires, state: joinPending, changed: make(chan struct{})}
	}
	return nil
}

// StartJoin sends a join request for an invite over the channel its hint
// names and returns at once; the join is pending until an admin of the
// circle approves it. Asking again for the same invite sends the request
// again (the inviter keeps one pending request per device) and keeps the
// wait. The node waits for the answer until the invite's expiry plus
// circle.PendingTTL, across restarts.
func (n *Node) StartJoin(text string) (*pendingJoin, error) {
	inv, err := circle.ParseInvite(strings.TrimSpace(text))
	if err != nil {
		return nil, err
	}
	id := inv.Token.ID().String()
	n.mu.Lock()
	j := n.joins[id]
	n.mu.Unlock()
	if j != nil && j.state != joinPending {
		if j.state == joinJoined && j.circle != nil && !n.stillIn(j.circle.ID()) {
			return nil, fmt.Errorf("%w (%q)", ErrInviteUsedHere, j.circle.Roster().Name)
		}
		return j, nil
	}
	now := n.opts.Now()
	req, pj, err := circle.RequestJoin(n.opts.Keyring, inv, n.opts.Name, now)
	if err != nil {
		return nil, err
	}
	var ch *channel
	for _, c := range n.channels {
		if c.ID == inv.Hint || c.Name == inv.Hint {
			ch = c
		}
	}
	if ch == nil {
		var ids []string
		for _, c := range n.channels {
			ids = append(ids, c.ID)
		}
		return nil, fmt.Errorf("%w %q (configured: %s): add that channel first with `remora channel add`", ErrNoRendezvous, inv.Hint, strings.Join(ids, ", "))
	}
	parts, err := splitFrame(append([]byte{frameVersion, frameJoin}, req...), ch.maxEnv)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	if j = n.joins[id]; j == nil {
		j = &pendingJoin{channel: ch.ID, started: now, expires: inv.Expires.Add(circle.PendingTTL), state: joinPending, changed: make(chan struct{})}
		n.joins[id] = j
	}
	j.p = pj // the newest request is the one the inviter holds
	rec := joinRecord{Channel: j.channel, Started: j.started, Expires: j.expires}
	n.mu.Unlock()
	if rec.Pending, err = pj.MarshalBinary(); err != nil {
		return nil, err
	}
	raw, _ := json.Marshal(rec)
	if err := n.db.PutJoin(id, raw); err != nil {
		return nil, err
	}
	ch.publish(parts, delivery.PriorityControl, "", nil)
	n.log.Info("join requested; waiting for an admin of the circle to approve", "channel", ch.Name, "safety_code", pj.Fingerprint())
	return j, nil
}

// ErrInviteUsedHere refuses an invite this device already joined with and
// whose circle it is no longer in: the inviter would refuse it as used.
var ErrInviteUsedHere = errors.New("invite: the invite was already used, by this device, which is no longer a member of that circle (removed, or it left); an invite admits once: ask an admin for a new invite")

// stillIn says whether this device is a member of circle id.
func (n *Node) stillIn(id circle.ID) bool {
	c, ok := n.circleOf(id)
	return ok && c.Roster().IsMember(n.ID())
}

// JoinCircle asks to join and waits (until ctx ends) for the inviter's
// answer. It returns the safety code the joiner compares with the inviter's.
func (n *Node) JoinCircle(ctx context.Context, text string) (*circle.Circle, string, error) {
	j, err := n.StartJoin(text)
	if err != nil {
		return nil, "", err
	}
	n.waitJoin(ctx, j)
	n.mu.Lock()
	defer n.mu.Unlock()
	code := j.p.Fingerprint()
	switch j.state {
	case joinJoined:
		return j.circle, code, nil
	case joinRefused:
		return nil, code, fmt.Errorf("node: join refused: %w", j.err)
	}
	return nil, code, fmt.Errorf("node: join: no answer yet (%w): the request waits for an admin of the circle to approve it (safety code %s); "+
		"this daemon keeps waiting until %s, and the inviter's daemon must be running and reading its channel", ctx.Err(), code, j.expires.Format(time.DateTime))
}

// waitJoin waits until j leaves pending, expires, or ctx ends.
func (n *Node) waitJoin(ctx context.Context, j *pendingJoin) {
	for {
		n.mu.Lock()
		state, changed, expires := j.state, j.changed, j.expires
		n.mu.Unlock()
		if state != joinPending {
			return
		}
		left := expires.Sub(n.opts.Now())
		if left <= 0 {
			n.finishJoin(j, joinRefused, nil, fmt.Errorf("%w (no admin approved it before %s)", circle.ErrInviteExpired, expires.Format(time.DateTime)))
			return
		}
		t := time.NewTimer(left)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
}

// finishJoin moves a pending join to joined or refused.
func (n *Node) finishJoin(j *pendingJoin, state string, c *circle.Circle, err error) {
	n.mu.Lock()
	if j.state != joinPending {
		n.mu.Unlock()
		return
	}
	j.state, j.circle, j.err = state, c, err
	close(j.changed)
	id := j.p.ID()
	n.mu.Unlock()
	if derr := n.db.DeleteJoin(id); derr != nil {
		n.log.Warn("forget join", "err", derr)
	}
}

func (n *Node) pendingJoins() []*pendingJoin {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []*pendingJoin
	for _, j := range n.joins {
		if j.state == joinPending {
			out = append(out, j)
		}
	}
	return out
}

// joinWaiting reports whether a join of this device waits for its welcome.
func (n *Node) joinWaiting() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, j := range n.joins {
		if j.state == joinPending {
			return true
		}
	}
	return false
}

// joinWelcomed tries a welcome against the joins waiting here.
func (n *Node) joinWelcomed(blob []byte) bool {
	for _, j := range n.pendingJoins() {
		n.mu.Lock()
		p := j.p
		n.mu.Unlock()
		c, u, err := circle.Join(n.opts.Keyring, p, blob, n.circleOptions())
		if err != nil {
			continue
		}
		if have, ok := n.circleOf(c.ID()); ok && have.Roster().IsMember(n.ID()) {
			// A welcome sent again for a device already in the circle (its
			// join was restarted after it got in): keep the circle as it is,
			// with its keys, instead of starting over from the welcome.
			n.finishJoin(j, joinJoined, have, nil)
			return true
		}
		if err := n.saveCircle(c); err != nil {
			n.log.Error("save joined circle", "err", err)
			return true
		}
		n.addCircle(c)
		n.afterUpdate(c, u, c.Epoch())
		n.announcePresence()
		n.log.Info("joined circle", "circle", c.ID())
		n.event("joined", c.ID().String(), "this device joined %q", c.Roster().Name)
		n.finishJoin(j, joinJoined, c, nil)
		n.poke()
		return true
	}
	return false
}

// joinRefused applies an inviter's refusal to the join it answers.
func (n *Node) joinRefused(b []byte) {
	for _, j := range n.pendingJoins() {
		n.mu.Lock()
		p := j.p
		n.mu.Unlock()
		if err := p.Refused(b); err != nil {
			n.log.Warn("join refused by the inviter", "invite", p.ID(), "reason", err)
			n.event("join_refused", p.ID(), "your join request was refused: %v", err)
			n.finishJoin(j, joinRefused, nil, err)
		}
	}
}

func (n *Node) joinStatus(j *pendingJoin) api.JoinStatus {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := api.JoinStatus{ID: j.p.ID(), State: j.state, SafetyCode: j.p.Fingerprint(), Inviter: j.p.Invite.Inviter.String(),
		Channel: n.channelName(j.channel), Expires: j.expires}
	if j.circle != nil {
		ci := circleInfo(j.circle)
		st.Circle = &ci
	}
	if j.err != nil {
		st.Error = j.err.Error()
	}
	return st
}

// Join implements api.Backend: it sends the request and returns the
// pending join with its safety code.
func (n *Node) Join(ctx context.Context, req api.JoinRequest) (api.JoinStatus, error) {
	j, err := n.StartJoin(req.Invite)
	if err != nil {
		if errors.Is(err, circle.ErrInviteExpired) || errors.Is(err, circle.ErrInviteMalformed) || errors.Is(err, ErrNoRendezvous) || errors.Is(err, ErrInviteUsedHere) {
			return api.JoinStatus{}, badRequest(err.Error(), "ask the inviter for a new invite")
		}
		return api.JoinStatus{}, err
	}
	return n.joinStatus(j), nil
}

// JoinStatus implements api.Backend.
func (n *Node) JoinStatus(ctx context.Context, id string, wait time.Duration) (api.JoinStatus, error) {
	n.mu.Lock()
	j := n.joins[id]
	n.mu.Unlock()
	if j == nil {
		return api.JoinStatus{}, &api.Error{Status: http.StatusNotFound, Message: "no join with ID " + id + " on this device",
			Advice: "start one with `remora join INVITE`"}
	}
	if wait > 0 {
		wctx, cancel := context.WithTimeout(ctx, wait)
		n.waitJoin(wctx, j)
		cancel()
	}
	return n.joinStatus(j), nil
}
