package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/core/circle"
	"github.com/remora-p2p/remora/core/delivery"
	"github.com/remora-p2p/remora/core/envelope"
)

// ErrRemoved means this device is no longer in the circle's roster.
var ErrRemoved = errors.New("node: this device is no longer a member of the circle")

// memberWatch remembers each circle's members as last seen, so that a
// removal is noticed however it arrives (own op, a member's op, a merge).
type memberWatch struct {
	mu   sync.Mutex
	seen map[circle.ID]map[peer.ID]bool
}

// swap records the current members and returns the previous set (nil the
// first time).
func (w *memberWatch) swap(id circle.ID, now map[peer.ID]bool) map[peer.ID]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seen == nil {
		w.seen = map[circle.ID]map[peer.ID]bool{}
	}
	prev := w.seen[id]
	w.seen[id] = now
	return prev
}

// syncMembers applies what a roster change means beyond keys: a removed
// device is cut off at once (connections, relay, presence, held items,
// pending outbox) and told of its removal; when this device was removed,
// it stops talking to the circle. before is the epoch before the change.
func (n *Node) syncMembers(c *circle.Circle, u *circle.Update, before circle.Epoch) {
	r := c.Roster()
	now := map[peer.ID]bool{}
	for _, m := range r.Members() {
		now[m.Peer] = true
	}
	prev := n.watch.swap(c.ID(), now)
	if u != nil && u.Op != nil && u.Op.Kind == circle.OpRemove && u.Op.Author == n.ID() && u.Op.Target != n.ID() {
		n.tellRemoved(c, u.Op, before)
	}
	for p := range prev {
		if now[p] {
			continue
		}
		if p == n.ID() {
			n.log.Warn("this device was removed from the circle; it keeps what it received and can send nothing more to it", "circle", c.ID(), "name", r.Name)
			n.event("removed", c.ID().String(), "this device is no longer a member of %q; it keeps what it received", r.Name)
			for q := range prev {
				if q != p && !n.isMember(q) {
					n.cutOff(q, true)
				}
			}
			continue
		}
		n.log.Info("member removed", "circle", c.ID(), "peer", p)
		n.event("member_removed", p.String(), "%s is no longer a member of %q", p, r.Name)
		if !n.isMember(p) {
			n.cutOff(p, false)
		}
	}
}

// cutOff ends everything this node does with a device that is in none of
// its circles any more (or, once this device left or was removed, with the
// members it no longer belongs with). keepRoster keeps the roster
// operations still to be delivered to p: a device that leaves must still
// get its own removal to the others, sealed under the epoch they know.
func (n *Node) cutOff(p peer.ID, keepRoster bool) {
	// Our relay reservation on it, and its admission as our relay.
	n.tr.RemoveRelay(p)
	// Every connection (direct and relayed); closing them also ends any
	// reservation it holds on our relay and the circuits through it.
	if err := n.tr.ClosePeer(p); err != nil {
		n.log.Debug("close connections", "peer", p, "err", err)
	}
	n.mu.Lock()
	if pi := n.peers[p]; pi != nil && pi.redial != nil {
		pi.redial()
	}
	delete(n.peers, p) // its presence is neither used nor passed on
	var changed, done []*OutboxEntry
	for id, e := range n.outbox {
		if !slices.Contains(e.Pending, p) || keepRoster && e.Kind == envelope.KindRoster {
			continue
		}
		e.Pending = slices.DeleteFunc(e.Pending, func(q peer.ID) bool { return q == p })
		if len(e.Pending) == 0 {
			delete(n.outbox, id)
			done = append(done, e)
		} else {
			changed = append(changed, e)
		}
	}
	n.mu.Unlock()
	n.cache.Forget(p)
	n.gossip.Forget(p)
	for _, e := range done {
		n.db.OutboxDelete(e.ID)
	}
	for _, e := range changed {
		n.updateOutbox(e)
	}
	n.forgetInMailbox(p)
	// Envelopes held for its key and its unfinished fragments.
	for _, prefix := range []string{fragmentSenderPrefix(p), keyWaitPrefix(p)} {
		dropped, err := n.db.DeleteHeldPrefix(prefix)
		if err != nil {
			n.log.Warn("held envelopes", "err", err)
		}
		for range dropped {
			n.count("dropped_held_removed")
		}
	}
}

// tellRemoved sends a removed device the operation that removed it, sealed
// to its box key under the epoch it knows, on every channel (the live path
// to it is closed), so that it stops sending and says so to its user.
func (n *Node) tellRemoved(c *circle.Circle, op *circle.Op, before circle.Epoch) {
	m, ok := c.FormerMember(op.Hash())
	if !ok {
		return
	}
	rcpt, err := m.Recipient()
	if err != nil {
		return
	}
	ek, err := n.epochKeysFor(c, before)
	if err != nil || ek.Epoch != envelope.Epoch(before) {
		n.log.Debug("tell removed member: old epoch keys gone", "peer", m.Peer, "err", err)
		return
	}
	seq, err := n.nextSeq("d/" + c.ID().String())
	if err != nil {
		return
	}
	now := n.opts.Now()
	d := envelope.Draft{Kind: envelope.KindRoster, Sequence: seq, Timestamp: now, Expiry: now.Add(n.opts.DefaultTTL), Body: op.Raw()}
	if _, err := randRead(d.ID[:]); err != nil {
		return
	}
	for _, ch := range n.channels {
		sealed, err := n.sealer.Direct(ek, n.signer(), rcpt, d, ch.route())
		if err != nil {
			n.log.Warn("tell removed member", "channel", ch.Name, "err", err)
			continue
		}
		ch.publish(sealed.Envelopes, delivery.PriorityControl, "", nil)
	}
}

// Members implements api.Backend.
func (n *Node) Members(ctx context.Context, cs string) ([]api.Member, error) {
	circles, err := n.circlesFor(cs)
	if err != nil {
		return nil, err
	}
	var out []api.Member
	for _, c := range circles {
		r := c.Roster()
		for _, mi := range c.MemberInfos() {
			am := api.Member{PeerID: mi.Peer.String(), Name: mi.Name, Role: mi.Role.String(), Circle: c.ID().String(),
				Self: mi.Peer == n.ID(), AddedBy: mi.AddedBy.String(), Added: mi.Added}
			if by, ok := r.Member(mi.AddedBy); ok {
				am.AddedByName = by.Name
			}
			if am.Self {
				am.LastSeen = n.opts.Now()
			} else {
				n.mu.Lock()
				if pi := n.peers[mi.Peer]; pi != nil {
					am.LastSeen = pi.lastSeen
				}
				n.mu.Unlock()
			}
			out = append(out, am)
		}
	}
	return out, nil
}

// findMember resolves who (display name or peer ID) in a circle. A name
// several devices share is refused with their peer IDs, so that one lost
// device can be revoked alone.
func (n *Node) findMember(c *circle.Circle, who string) (circle.Member, error) {
	var found []circle.Member
	for _, m := range c.Roster().Members() {
		if m.Name == who || m.Peer.String() == who {
			found = append(found, m)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		var names []string
		for _, m := range c.Roster().Members() {
			names = append(names, m.Name+" ("+m.Peer.String()+")")
		}
		return circle.Member{}, &api.Error{Status: http.StatusNotFound, Message: fmt.Sprintf("no member %q in %q; members: %s", who, c.Roster().Name, strings.Join(names, ", ")),
			Advice: "name a member or a device's peer ID (see `remora circle members`)"}
	}
	var ids []string
	for _, m := range found {
		ids = append(ids, m.Peer.String())
	}
	return circle.Member{}, &api.Error{Status: http.StatusConflict, Message: fmt.Sprintf("%d devices are named %q: %s", len(found), who, strings.Join(ids, ", ")),
		Advice: "give the peer ID of the device you mean (to revoke one lost device, name that one)"}
}

// authorErr turns a refused roster operation into advice.
func authorErr(c *circle.Circle, err error) error {
	switch {
	case errors.Is(err, circle.ErrLastAdmin):
		return &api.Error{Status: http.StatusBadRequest, Message: err.Error(), Advice: "a circle always keeps one admin while it has other members"}
	case errors.Is(err, circle.ErrUnauthorized):
		var admins []string
		for _, m := range c.Roster().Members() {
			if m.Role == circle.RoleAdmin {
				admins = append(admins, m.Name)
			}
		}
		return &api.Error{Status: http.StatusForbidden, Message: err.Error(), Advice: "ask an admin (" + strings.Join(admins, ", ") + ")"}
	}
	return err
}

// applyOwn persists and spreads a roster operation this device signed.
func (n *Node) applyOwn(c *circle.Circle, before circle.Epoch, u *circle.Update) error {
	if err := n.saveCircle(c); err != nil {
		return err
	}
	n.afterUpdate(c, u, before)
	return nil
}

// RemoveMember implements api.Backend (admins).
func (n *Node) RemoveMember(ctx context.Context, req api.MemberRequest) error {
	id, err := n.parseCircle(req.Circle)
	if err != nil {
		return err
	}
	c, _ := n.circleOf(id)
	m, err := n.findMember(c, req.Who)
	if err != nil {
		return err
	}
	if m.Peer == n.ID() {
		return badRequest("that is this device", "to leave the circle run `remora circle leave`")
	}
	before := c.Epoch()
	u, err := c.RemoveMember(m.Peer)
	if err != nil {
		return authorErr(c, err)
	}
	n.log.Info("removed a member", "circle", id, "name", m.Name, "peer", m.Peer)
	return n.applyOwn(c, before, u)
}

// SetRole implements api.Backend (admins).
func (n *Node) SetRole(ctx context.Context, req api.MemberRequest) (api.Member, error) {
	id, err := n.parseCircle(req.Circle)
	if err != nil {
		return api.Member{}, err
	}
	c, _ := n.circleOf(id)
	m, err := n.findMember(c, req.Who)
	if err != nil {
		return api.Member{}, err
	}
	var role circle.Role
	switch req.Role {
	case "admin":
		role = circle.RoleAdmin
	case "member":
		role = circle.RoleMember
	default:
		return api.Member{}, badRequest(fmt.Sprintf("role %q", req.Role), "give admin or member")
	}
	if m.Role == role {
		return api.Member{PeerID: m.Peer.String(), Name: m.Name, Role: m.Role.String(), Circle: id.String()}, nil
	}
	before := c.Epoch()
	u, err := c.SetRole(m.Peer, role)
	if err != nil {
		return api.Member{}, authorErr(c, err)
	}
	if err := n.applyOwn(c, before, u); err != nil {
		return api.Member{}, err
	}
	return api.Member{PeerID: m.Peer.String(), Name: m.Name, Role: role.String(), Circle: id.String()}, nil
}

// Leave implements api.Backend: this device removes itself.
func (n *Node) Leave(ctx context.Context, req api.MemberRequest) error {
	id, err := n.parseCircle(req.Circle)
	if err != nil {
		return err
	}
	c, _ := n.circleOf(id)
	before := c.Epoch()
	u, err := c.RemoveMember(n.ID())
	if err != nil {
		return authorErr(c, err)
	}
	return n.applyOwn(c, before, u)
}

// stillMember refuses to send to a circle this device was removed from.
func (n *Node) stillMember(c *circle.Circle) error {
	r := c.Roster()
	if r.IsMember(n.ID()) {
		return nil
	}
	return fmt.Errorf("%w %q: an admin removed it (or it left); it keeps what it received, and only a new invite can bring it back", ErrRemoved, r.Name)
}
