package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/core/circle"
	"github.com/remora-p2p/remora/core/store"
	"github.com/remora-p2p/remora/sdk"
)

// Version is reported by the API.
var Version = "0.1.0-dev"

var _ api.Backend = (*Node)(nil)

func badRequest(msg, advice string) error {
	return &api.Error{Status: http.StatusBadRequest, Message: msg, Advice: advice}
}

// Status implements api.Backend.
func (n *Node) Status(ctx context.Context) (api.Status, error) {
	st := api.Status{
		PeerID:       n.ID().String(),
		Version:      Version,
		Ready:        n.Ready(),
		Started:      n.started,
		Reachability: string(n.tr.Reachability()),
		NAT:          natHint(n.tr).String(),
		Relay:        n.relayStatus(),
	}
	st.NATMapping, st.NATFiltering = natBehaviour(n.tr)
	n.mu.Lock()
	st.Outbox = len(n.outbox)
	if n.bdayTried > 0 {
		st.Birthday = &api.Birthday{Attempts: n.bdayTried, Direct: n.bdayDirect}
	}
	n.mu.Unlock()
	for _, a := range n.tr.Addrs() {
		st.ListenAddrs = append(st.ListenAddrs, a.Multiaddr.String()+" ("+string(a.Kind)+")")
	}
	st.ListenPorts = n.listenPorts
	for _, c := range n.allCircles() {
		st.Circles = append(st.Circles, circleInfo(c))
	}
	st.Mailbox = n.mailboxStatus()
	st.Held = n.heldStatus()
	return st, nil
}

// heldStatus reports the held envelopes and the refusals of receiving.
func (n *Node) heldStatus() *api.Held {
	items, bytes, err := n.db.HeldUsage("")
	if err != nil {
		n.log.Warn("held envelopes", "err", err)
	}
	c := n.Counters()
	return &api.Held{Items: items, Bytes: bytes, QuotaBytes: n.opts.MaxHeldBytes, PerSenderBytes: n.opts.MaxHeldBytesPerPeer,
		DroppedQuota: c["dropped_held_quota"], DroppedJoinParts: c[partTooLarge] + c[partsEvicted], DuplicatesRemoved: c["duplicates_removed"]}
}

func circleInfo(c *circle.Circle) api.Circle {
	r := c.Roster()
	ci := api.Circle{ID: c.ID().String(), Name: r.Name, Epoch: c.Epoch().String()[:16]}
	for _, m := range r.Members() {
		ci.Members = append(ci.Members, api.Member{PeerID: m.Peer.String(), Name: m.Name, Role: m.Role.String()})
	}
	ci.Roster = rosterHealth(c)
	return ci
}

func (n *Node) parseCircle(s string) (circle.ID, error) {
	if s == "" {
		cs := n.allCircles()
		if len(cs) == 1 {
			return cs[0].ID(), nil
		}
		return circle.ID{}, badRequest("circle: required", "pass a circle ID from `remora status`")
	}
	id, err := circle.ParseID(s)
	if err != nil {
		return id, badRequest(err.Error(), "pass a circle ID from `remora status`")
	}
	if _, ok := n.circleOf(id); !ok {
		return id, &api.Error{Status: http.StatusNotFound, Message: "no such circle: " + s, Advice: "see `remora status` for your circles"}
	}
	return id, nil
}

// Send implements api.Backend.
func (n *Node) Send(ctx context.Context, req api.SendRequest) (api.SendResult, error) {
	id, err := n.parseCircle(req.Circle)
	if err != nil {
		return api.SendResult{}, err
	}
	var to []peer.ID
	for _, s := range req.To {
		p, err := n.resolveMember(id, s)
		if err != nil {
			return api.SendResult{}, err
		}
		to = append(to, p)
	}
	body := req.Body
	if req.Text != "" {
		body = []byte(req.Text)
	}
	if len(body) == 0 {
		return api.SendResult{}, badRequest("empty message", `give "text" or "body"`)
	}
	mid, err := n.SendMessage(ctx, SendRequest{Circle: id, To: to, Body: body, TTL: time.Duration(req.TTL)})
	if err != nil {
		if errors.Is(err, ErrRemoved) {
			return api.SendResult{}, badRequest(err.Error(), "ask an admin of the circle for a new invite if you should be in it")
		}
		if errors.Is(err, ErrNotAMember) || errors.Is(err, ErrNoRecipients) || errors.Is(err, ErrQuota) {
			return api.SendResult{}, badRequest(err.Error(), "see `remora peers` for the members")
		}
		return api.SendResult{}, err
	}
	return api.SendResult{ID: mid.String(), Accepted: n.opts.Now()}, nil
}

// resolveMember accepts a peer ID or a member's display name.
func (n *Node) resolveMember(id circle.ID, s string) (peer.ID, error) {
	c, _ := n.circleOf(id)
	if p, err := peer.Decode(s); err == nil {
		return p, nil
	}
	var found []peer.ID
	for _, m := range c.Roster().Members() {
		if m.Name == s {
			found = append(found, m.Peer)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return "", badRequest("no member named "+s, "see `remora peers`")
	}
	return "", badRequest("several members are named "+s, "use the peer ID from `remora peers`")
}

// Messages implements api.Backend.
func (n *Node) Messages(ctx context.Context, after int64, limit int) ([]api.Message, error) {
	from, err := n.afterCursor(after)
	if err != nil {
		return nil, err
	}
	msgs, err := n.db.InboxAfter(from, limit)
	if err != nil {
		return nil, err
	}
	out := make([]api.Message, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, n.apiMessage(m))
	}
	return out, nil
}

func (n *Node) afterCursor(after int64) (uint64, error) {
	if after >= 0 {
		return uint64(after), nil
	}
	return n.db.AppCursor()
}

func (n *Node) apiMessage(m store.InboxMessage) api.Message {
	am := api.Message{Seq: int64(m.Seq), ID: fmt.Sprintf("%x", m.ID), Circle: circle.ID(m.Circle).String(), From: m.Sender,
		Direct: m.Direct, Sent: m.Timestamp, Received: m.Received, SenderSeq: m.SenderSeq, Path: m.Path, Body: m.Body}
	if isText(m.Body) {
		am.Text, am.Body = string(m.Body), nil
	}
	if c, ok := n.circleOf(m.Circle); ok {
		if p, err := peer.Decode(m.Sender); err == nil {
			if mem, ok := c.Roster().Member(p); ok {
				am.FromName = mem.Name
			}
		}
	}
	return am
}

func isText(b []byte) bool {
	return !bytes.ContainsAny(b, "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f") && utf8.Valid(b)
}

// WaitMessages implements api.Backend.
func (n *Node) WaitMessages(ctx context.Context, after int64) error {
	for {
		n.mu.Lock()
		ch := n.notify
		n.mu.Unlock()
		msgs, err := n.Messages(ctx, after, 1)
		if err != nil || len(msgs) > 0 {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// Ack implements api.Backend.
func (n *Node) Ack(ctx context.Context, seq int64) error {
	if seq < 0 {
		return badRequest("seq must not be negative", "ack the seq of the last message you handled")
	}
	return n.db.AckApp(uint64(seq))
}

// Peers implements api.Backend.
func (n *Node) Peers(ctx context.Context) ([]api.Peer, error) {
	seen := map[peer.ID]*api.Peer{}
	var order []peer.ID
	for _, c := range n.allCircles() {
		for _, m := range c.Roster().Members() {
			if m.Peer == n.ID() {
				continue
			}
			p, ok := seen[m.Peer]
			if !ok {
				p = &api.Peer{PeerID: m.Peer.String(), Name: m.Name, Path: "channel"}
				seen[m.Peer] = p
				order = append(order, m.Peer)
			}
			p.Circles = append(p.Circles, c.ID().String())
		}
	}
	out := make([]api.Peer, 0, len(order))
	for _, id := range order {
		p := seen[id]
		if path := n.tr.PathTo(id); path.Live() {
			p.Path = string(path)
		}
		n.mu.Lock()
		if pi := n.peers[id]; pi != nil {
			p.LastSeen, p.FoundBy = pi.lastSeen, pi.foundBy
			if p.Path != "channel" {
				p.Via = pi.via
			}
			if pi.record != nil {
				p.NAT = pi.record.NAT.String()
				p.Presence = pi.record.IssuedAt
			}
		}
		n.mu.Unlock()
		if p.FoundBy == "" {
			p.FoundBy = n.disc.FoundBy(id)
		}
		p.Cached = len(n.cache.Addrs(id))
		for _, a := range n.tr.KnownAddrs(id) {
			p.Addrs = append(p.Addrs, a.String())
		}
		out = append(out, *p)
	}
	return out, nil
}

// Channels implements api.Backend.
func (n *Node) Channels(ctx context.Context) ([]api.Channel, error) {
	var out []api.Channel
	for _, ch := range n.channels {
		state, err := ch.health()
		ac := api.Channel{Name: ch.Name, Adapter: ch.Adapter, State: string(state), Board: ch.caps.Board, Push: ch.caps.Push,
			Counters: map[string]int64{"received": ch.received.Load(), "published": ch.published.Load(), "messages_published": ch.messages.Load(), "queued": int64(ch.pacer.Len())}}
		if h, ok := ch.Impl.(sdk.Healther); ok {
			hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			hh := h.Health(hctx)
			cancel()
			if hh.State != "" && hh.State != sdk.HealthOK {
				ac.State = string(hh.State)
			}
			if ac.Message == "" {
				ac.Message = hh.Message
			}
			for k, v := range hh.Counters {
				ac.Counters[k] = v
			}
		}
		if err != nil {
			ac.Message = err.Error()
			ac.Advice = Advice(err)
		}
		out = append(out, ac)
	}
	for _, f := range n.failed {
		err := f.Err
		if err == nil {
			err = errors.New("not configured")
		}
		out = append(out, api.Channel{Name: f.Name, Adapter: f.Adapter, State: string(sdk.HealthDown), Message: err.Error(), Advice: Advice(err)})
	}
	return out, nil
}

// Advice turns an adapter's typed error into what the user can do.
func Advice(err error) string {
	switch sdk.CodeOf(err) {
	case sdk.CodeAuthFailed:
		return "the service refused the credentials: check the password or token (run `remora channel add` again to re-enter it)"
	case sdk.CodeNeedsUserAction:
		return "the service wants you to act (re-authorize the app, accept terms): open it in a browser, then restart the channel"
	case sdk.CodeBadConfig:
		return "fix this channel's settings in config.toml (the message names the field)"
	case sdk.CodeNotFound:
		return "the room, folder, list or repository was not found: check the address and that your account can reach it"
	case sdk.CodeRateLimited:
		return "the service is throttling; remora slows down on its own"
	case sdk.CodeUnavailable:
		return "the service is unreachable right now; remora retries with backoff"
	case sdk.CodeTooLarge:
		return "an item was too large for the service; remora splits messages into fragments, so report this"
	case sdk.CodeCursorInvalid:
		return "the channel's history was rewritten; remora rescans it (nothing is lost)"
	}
	return "see the daemon's log for details"
}

// Events implements api.Backend.
func (n *Node) Events(ctx context.Context, after int64) ([]api.Event, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []api.Event
	for _, e := range n.events {
		if e.seq > after {
			out = append(out, api.Event{Seq: e.seq, Time: e.t, Kind: e.kind, Message: e.message, Ref: e.ref})
		}
	}
	return out, nil
}

// WaitEvents implements api.Backend.
func (n *Node) WaitEvents(ctx context.Context, after int64) error {
	for {
		n.mu.Lock()
		ch := n.evNotify
		last := int64(0)
		if len(n.events) > 0 {
			last = n.events[len(n.events)-1].seq
		}
		n.mu.Unlock()
		if last > after {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// CreateCircle implements api.Backend.
func (n *Node) CreateCircle(ctx context.Context, req api.CreateCircleRequest) (api.Circle, error) {
	if req.Name == "" {
		return api.Circle{}, badRequest("name: required", "give the circle a name")
	}
	c, err := n.NewCircle(req.Name)
	if err != nil {
		return api.Circle{}, err
	}
	return circleInfo(c), nil
}

// Invite implements api.Backend.
func (n *Node) Invite(ctx context.Context, req api.InviteRequest) (api.InviteResult, error) {
	id, err := n.parseCircle(req.Circle)
	if err != nil {
		return api.InviteResult{}, err
	}
	inv, err := n.NewInvite(id, req.Hint, time.Duration(req.TTL), req.InPerson)
	if err != nil {
		if errors.Is(err, circle.ErrUnauthorized) {
			return api.InviteResult{}, &api.Error{Status: http.StatusForbidden, Message: err.Error(), Advice: "an admin approves each join and signs the addition"}
		}
		return api.InviteResult{}, badRequest(err.Error(), "")
	}
	var qr bytes.Buffer
	inv.QR(&qr)
	return api.InviteResult{Invite: inv.String(), QR: qr.String(), Expires: inv.Expires, InPerson: req.InPerson}, nil
}
