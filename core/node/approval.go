package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/core/circle"
)

// receiveJoinRequest handles a join request read from a channel: an
// authentic request waits as pending for an admin (nothing is sent to the
// joiner), an in-person invite's first request and a repeat from the
// admitted device are welcomed, and a request on a used, expired, denied or
// void invite is refused so the joiner hears why.
func (n *Node) receiveJoinRequest(channelID string, blob []byte) error {
	for _, c := range n.allCircles() {
		req, err := c.OpenJoin(blob)
		if req == nil {
			continue // not an invite of this circle, or forged
		}
		if err != nil {
			n.refuseJoin(c, req, channelID, err)
			return nil
		}
		req.Channel = channelID
		approved, err := c.HoldJoin(req)
		if err != nil {
			n.refuseJoin(c, req, channelID, err)
			return nil
		}
		if err := n.saveCircle(c); err != nil {
			return &storeError{err}
		}
		if approved {
			return n.welcome(c, req)
		}
		for _, p := range c.PendingJoins() {
			if p.Joiner == req.Joiner {
				n.log.Info("join request waits for approval", "circle", c.ID(), "name", p.Name, "peer", p.Joiner, "channel", channelID, "safety_code", p.SafetyCode)
				n.event("join_pending", p.Joiner.String(), "%s asks to join %q through %s: compare the safety code %s with them, then run `remora circle approve %s` or `remora circle deny %s`",
					p.Name, c.Roster().Name, channelID, p.SafetyCode, p.Name, p.Name)
			}
		}
		return nil
	}
	n.count("ignored_join_request")
	return nil
}

// refuseJoin answers an authentic request that cannot be admitted, on the
// channel it came through, so the joiner gets the reason instead of silence.
func (n *Node) refuseJoin(c *circle.Circle, req *circle.JoinRequest, channelID string, reason error) {
	if refusal, err := circle.Refuse(req, reason); err == nil {
		// A fresh nonce makes each answer a new item: channels with strong
		// idempotency would drop a repeated one.
		nonce := make([]byte, 8)
		randRead(nonce)
		n.publishFrame(channelID, frameRefused, append(nonce, refusal...))
	}
	n.log.Info("join request refused", "circle", c.ID(), "name", req.Name, "peer", req.Joiner, "reason", reason)
	n.event("join_refused", c.ID().String(), "the join request of %s (%s) was refused: %v", req.Name, req.Joiner, reason)
}

// welcome signs the addition of an approved joiner and sends it the welcome
// on the channel its request came through.
func (n *Node) welcome(c *circle.Circle, req *circle.JoinRequest) error {
	before := c.Epoch()
	w, u, err := c.Welcome(req)
	if err != nil {
		n.log.Warn("welcome", "circle", c.ID(), "peer", req.Joiner, "err", err)
		n.event("join_refused", c.ID().String(), "the join of %s could not be completed: %v", req.Name, err)
		return nil
	}
	if err := n.saveCircle(c); err != nil {
		return &storeError{err}
	}
	n.publishFrame(req.Channel, frameWelcome, w)
	if req.Resend {
		n.log.Info("welcome sent again", "circle", c.ID(), "member", req.Name)
		return nil
	}
	n.log.Info("member joined", "circle", c.ID(), "member", req.Name, "peer", req.Joiner)
	n.event("member_joined", req.Joiner.String(), "%s joined %q", req.Name, c.Roster().Name)
	n.afterUpdate(c, u, before)
	n.announcePresence()
	return nil
}

// expirePending refuses join requests that waited too long for approval.
func (n *Node) expirePending() {
	for _, c := range n.allCircles() {
		expired := c.ExpirePending()
		if len(expired) == 0 {
			continue
		}
		if err := n.saveCircle(c); err != nil {
			n.log.Error("save circle", "err", err)
		}
		for _, req := range expired {
			n.refuseJoin(c, req, req.Channel, circle.ErrInviteExpired)
		}
	}
}

// circlesFor is one circle (by ID) or all of them (circle "").
func (n *Node) circlesFor(s string) ([]*circle.Circle, error) {
	if s == "" {
		return n.allCircles(), nil
	}
	id, err := n.parseCircle(s)
	if err != nil {
		return nil, err
	}
	c, _ := n.circleOf(id)
	return []*circle.Circle{c}, nil
}

// Pending implements api.Backend.
func (n *Node) Pending(ctx context.Context, cs string) ([]api.PendingJoin, error) {
	circles, err := n.circlesFor(cs)
	if err != nil {
		return nil, err
	}
	var out []api.PendingJoin
	for _, c := range circles {
		for _, p := range c.PendingJoins() {
			out = append(out, api.PendingJoin{Circle: c.ID().String(), CircleName: c.Roster().Name, Name: p.Name, PeerID: p.Joiner.String(),
				Channel: n.channelName(p.Channel), Since: p.Since, Expires: p.Expires, SafetyCode: p.SafetyCode})
		}
	}
	return out, nil
}

// channelName is the local name of the channel with that ID.
func (n *Node) channelName(id string) string {
	for _, ch := range n.channels {
		if ch.ID == id {
			return ch.Name
		}
	}
	return id
}

// findPending resolves who (display name or peer ID) among the pending
// requests; unknown or ambiguous names list what is pending.
func (n *Node) findPending(cs, who string) (*circle.Circle, peer.ID, error) {
	circles, err := n.circlesFor(cs)
	if err != nil {
		return nil, "", err
	}
	type hit struct {
		c *circle.Circle
		p circle.PendingRequest
	}
	var all, found []hit
	for _, c := range circles {
		for _, p := range c.PendingJoins() {
			all = append(all, hit{c, p})
			if p.Name == who || p.Joiner.String() == who {
				found = append(found, hit{c, p})
			}
		}
	}
	list := func(hs []hit) string {
		var s []string
		for _, h := range hs {
			s = append(s, fmt.Sprintf("%s (%s, safety code %s)", h.p.Name, h.p.Joiner, h.p.SafetyCode))
		}
		return strings.Join(s, "; ")
	}
	switch {
	case len(found) == 1:
		return found[0].c, found[0].p.Joiner, nil
	case len(found) > 1:
		return nil, "", &api.Error{Status: http.StatusConflict, Message: fmt.Sprintf("several pending requests match %q: %s", who, list(found)),
			Advice: "give the peer ID of the one whose safety code matches what the joiner reads to you"}
	case len(all) == 0:
		return nil, "", &api.Error{Status: http.StatusNotFound, Message: fmt.Sprintf("no join request from %q is pending; nothing is pending", who),
			Advice: "the joiner runs `remora join INVITE` first; requests expire after " + circle.PendingTTL.String()}
	}
	return nil, "", &api.Error{Status: http.StatusNotFound, Message: fmt.Sprintf("no join request from %q is pending; pending: %s", who, list(all)),
		Advice: "approve by one of these names or peer IDs (see `remora circle pending`)"}
}

// Approve implements api.Backend: the admin compared the safety code and
// admits the device.
func (n *Node) Approve(ctx context.Context, req api.MemberRequest) (api.Member, error) {
	c, p, err := n.findPending(req.Circle, req.Who)
	if err != nil {
		return api.Member{}, err
	}
	jr, others, err := c.ApproveJoin(p)
	if err != nil {
		if errors.Is(err, circle.ErrUnauthorized) {
			return api.Member{}, &api.Error{Status: http.StatusForbidden, Message: err.Error(), Advice: "ask an admin of the circle to approve it"}
		}
		return api.Member{}, err
	}
	if err := n.saveCircle(c); err != nil {
		return api.Member{}, err
	}
	for _, o := range others {
		n.refuseJoin(c, o, o.Channel, circle.ErrInviteUsed)
	}
	if err := n.welcome(c, jr); err != nil {
		return api.Member{}, err
	}
	m, ok := c.Roster().Member(p)
	if !ok {
		return api.Member{}, fmt.Errorf("node: approve %s: not in the roster after the welcome", p)
	}
	return api.Member{PeerID: p.String(), Name: m.Name, Role: m.Role.String(), Circle: c.ID().String()}, nil
}

// Deny implements api.Backend: the request is refused, and so is every
// other one on its invite, now and later.
func (n *Node) Deny(ctx context.Context, req api.MemberRequest) error {
	c, p, err := n.findPending(req.Circle, req.Who)
	if err != nil {
		return err
	}
	refused, err := c.DenyJoin(p)
	if err != nil {
		return err
	}
	if err := n.saveCircle(c); err != nil {
		return err
	}
	for _, r := range refused {
		n.refuseJoin(c, r, r.Channel, circle.ErrInviteDenied)
	}
	return nil
}
