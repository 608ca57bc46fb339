package node

import (
	"context"
	"encoding/binary"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/remora-p2p/remora/core/delivery"
	"github.com/remora-p2p/remora/core/envelope"
	"github.com/remora-p2p/remora/core/presence"
)

// Punch probe windows (DESIGN "Connect"): when no live path to a member can
// be made and both sides may be punchable, one side asks the other, over a
// push channel fast enough to coordinate (latency under ~2 s), to spray
// towards each other during the same window. The request is a direct
// envelope of kind punch: start (Unix ms, 8 bytes) ‖ duration (ms, 4 bytes).
// Over a live relayed path DCUtR does this instead (core/transport).
const (
	punchLead     = 3 * time.Second  // time for the request to cross the channel
	punchWindow   = 10 * time.Second // both sides spray this long
	punchInterval = 2 * time.Minute  // at most one window per peer this often
	maxLatency    = 2 * time.Second
)

// punchChannel returns a push channel fast enough to coordinate a window.
func (n *Node) punchChannel() *channel {
	for _, ch := range n.channels {
		if ch.caps.Push && ch.caps.Latency.D() > 0 && ch.caps.Latency.D() <= maxLatency {
			return ch
		}
	}
	return nil
}

// hopeless reports pairs that no window can punch: a symmetric NAT on
// either side goes straight to a relay.
func (n *Node) hopeless(p peer.ID) bool {
	if natHint(n.tr) == presence.NATSymmetric {
		return true
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	pi := n.peers[p]
	return pi != nil && pi.record != nil && pi.record.NAT == presence.NATSymmetric
}

// requestPunch asks p for a probe window over a push channel.
func (n *Node) requestPunch(p peer.ID) {
	ch := n.punchChannel()
	if ch == nil || n.hopeless(p) || !n.punchDue(p) {
		return
	}
	c := n.sharedCircle(p)
	if c == nil {
		return
	}
	start := n.opts.Now().Add(punchLead)
	body := binary.BigEndian.AppendUint64(nil, uint64(start.UnixMilli()))
	body = binary.BigEndian.AppendUint32(body, uint32(punchWindow.Milliseconds()))
	e := &OutboxEntry{Circle: c.ID(), Kind: envelope.KindPunch, Direct: true, Body: body,
		Created: n.opts.Now(), Expiry: start.Add(punchWindow)}
	if _, err := randRead(e.ID[:]); err != nil {
		return
	}
	sealed, err := n.seal(c, e, p, ch.route())
	if err != nil {
		n.log.Debug("punch request", "peer", p, "err", err)
		return
	}
	ch.publish(sealed.Envelopes, delivery.PriorityControl, "", nil)
	n.log.Info("asked for a hole-punching window", "peer", p, "channel", ch.Name, "start", start)
	go n.punch(p, start, punchWindow)
}

// handlePunch joins the window a member asked for.
func (n *Node) handlePunch(msg *envelope.Message) {
	if len(msg.Body) != 12 || msg.Mode != envelope.ModeDirect {
		n.count("dropped_malformed")
		return
	}
	start := time.UnixMilli(int64(binary.BigEndian.Uint64(msg.Body)))
	dur := time.Duration(binary.BigEndian.Uint32(msg.Body[8:])) * time.Millisecond
	now := n.opts.Now()
	if start.Before(now.Add(-dur)) || start.After(now.Add(time.Minute)) || dur > time.Minute {
		n.count("dropped_punch_window")
		return
	}
	n.punchDue(msg.Sender) // our side counts as having punched with it
	n.count("punch_windows_joined")
	go n.punch(msg.Sender, start, dur)
}

// punch dials p's direct addresses from start for dur, while p dials ours.
func (n *Node) punch(p peer.ID, start time.Time, dur time.Duration) {
	if d := start.Sub(n.opts.Now()); d > 0 {
		time.Sleep(d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	path, err := n.tr.SimultaneousConnect(ctx, p)
	if err != nil {
		n.log.Debug("punch window ended without a path", "peer", p, "err", err)
		return
	}
	n.log.Info("connected in a punch window", "peer", p, "path", path)
}

// punchDue reports (and records) whether a window with p may start now.
func (n *Node) punchDue(p peer.ID) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	pi := n.peerLocked(p)
	if n.opts.Now().Sub(pi.lastPunch) < punchInterval {
		return false
	}
	pi.lastPunch = n.opts.Now()
	return true
}
