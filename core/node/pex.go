package node

import (
	"context"
	"errors"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/remora-p2p/remora/core/circle"
	"github.com/remora-p2p/remora/core/envelope"
	"github.com/remora-p2p/remora/core/pex"
	"github.com/remora-p2p/remora/core/presence"
	"github.com/remora-p2p/remora/sdk"
)

// Peer exchange as running gossip (core/pex): on connect, on change (a
// fresher record of a member accepted from any box), and on a jittered
// interval, each connected member is sent the members' signed records it
// has not had yet, our own full record first.

// pexReceiveGap is the least time between two exchanges accepted from one
// member; more are dropped and counted (a member cannot make us dial in a
// loop).
const pexReceiveGap = pex.MinGap / 2

// kickPEX asks the gossip loop to send what changed, soon.
func (n *Node) kickPEX() {
	select {
	case n.pexKick <- struct{}{}:
	default:
	}
}

// pexLoop runs the periodic and on-change exchanges.
func (n *Node) pexLoop(ctx context.Context) {
	if n.opts.Boxes.NoPEX {
		return
	}
	t := time.NewTimer(jitter(n.opts.Boxes.PEXInterval))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n.refreshOwn()
			t.Reset(jitter(n.opts.Boxes.PEXInterval))
		case <-n.pexKick:
			// let a burst of records (a whole exchange arriving) settle
			if sdk.Sleep(ctx, 100*time.Millisecond) != nil {
				return
			}
		}
		for _, p := range n.connectedMembers() {
			n.exchangeWith(ctx, p, false)
		}
	}
}

// connectedMembers lists the members with a live path now.
func (n *Node) connectedMembers() []peer.ID {
	seen := map[peer.ID]bool{}
	var out []peer.ID
	for _, c := range n.allCircles() {
		for _, m := range c.Roster().Members() {
			if m.Peer == n.ID() || seen[m.Peer] {
				continue
			}
			seen[m.Peer] = true
			if n.tr.PathTo(m.Peer).Live() {
				out = append(out, m.Peer)
			}
		}
	}
	return out
}

// refreshOwn drops our cached own record, so the next exchange carries a
// fresh one (new sequence, current addresses).
func (n *Node) refreshOwn() {
	n.mu.Lock()
	n.own = nil
	n.mu.Unlock()
}

// ownRecord is our full signed record (LAN addresses included: it travels
// only on live paths to members), rebuilt at most every half presence
// interval.
func (n *Node) ownRecord() *pex.Record {
	n.mu.Lock()
	own, at := n.own, n.ownAt
	n.mu.Unlock()
	if own != nil && n.opts.Now().Sub(at) < n.opts.PresenceInterval/2 {
		return own
	}
	rec, err := n.record()
	if err != nil {
		return own
	}
	raw, err := presence.Sign(rec, n.self.PrivateKey())
	if err != nil {
		return own
	}
	own = &pex.Record{Subject: n.ID(), Seq: rec.Seq, Signed: raw}
	n.mu.Lock()
	n.own, n.ownAt = own, n.opts.Now()
	n.mu.Unlock()
	return own
}

// heldRecords are the signed records we hold of c's members.
func (n *Node) heldRecords(c *circle.Circle) []pex.Record {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []pex.Record
	for q, pi := range n.peers {
		if pi.raw != nil && pi.record != nil && c.Roster().IsMember(q) {
			out = append(out, pex.Record{Subject: q, Seq: pi.record.Seq, Signed: pi.raw})
		}
	}
	return out
}

// exchangeWith sends member p, for each circle both are in, the records p
// has not had; force ignores the gossip's per-member gap (a new connection).
func (n *Node) exchangeWith(ctx context.Context, p peer.ID, force bool) {
	if n.opts.Boxes.NoPEX {
		return
	}
	own := n.ownRecord()
	for _, c := range n.allCircles() {
		if !c.Roster().IsMember(p) {
			continue
		}
		recs := n.gossip.Pick(p, own, n.heldRecords(c), force)
		if len(recs) == 0 {
			continue
		}
		ek, err := c.SendEpochKeys()
		if err != nil {
			continue
		}
		sk, err := c.SendKey()
		if err != nil {
			continue
		}
		now := n.opts.Now()
		sealed, err := n.sealer.Broadcast(ek, n.signer(), sk.Key[:], envelope.Draft{
			Kind: envelope.KindPeerExchange, Timestamp: now, Expiry: now.Add(3 * n.opts.PresenceInterval), Body: pex.Encode(recs),
		}, envelope.Route{Channel: envelope.LiveChannel, MaxSize: 1 << 20})
		if err != nil {
			n.log.Debug("peer exchange seal", "err", err)
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ok := true
		for _, env := range sealed.Envelopes {
			if err := n.tr.Send(sctx, p, env); err != nil {
				n.log.Debug("peer exchange", "peer", p, "err", err)
				ok = false
				break
			}
		}
		cancel()
		if ok {
			n.gossip.Sent(p, recs)
			n.count("pex_sent_records")
		}
	}
}

// handlePEX accepts the members' records in an exchange from a member.
func (n *Node) handlePEX(msg *envelope.Message, path string) error {
	if n.opts.Boxes.NoPEX {
		n.count("ignored_pex_off")
		return nil
	}
	now := n.opts.Now()
	n.mu.Lock()
	pi := n.peerLocked(msg.Sender)
	early := now.Sub(pi.pexAt) < pexReceiveGap
	if !early {
		pi.pexAt = now
	}
	n.mu.Unlock()
	if early {
		n.count("dropped_pex_rate")
		return errPEXEarly
	}
	recs, err := pex.Decode(msg.Body)
	if err != nil {
		n.count("dropped_malformed")
		return nil
	}
	for _, raw := range recs {
		n.acceptPresence(msg.Circle, raw, boxPEX)
	}
	return nil
}

// errPEXEarly refuses an exchange that came less than pexReceiveGap after
// the last one accepted from its sender. It reaches the sender as a NACK,
// so its gossip does not count the records as sent and they stay due: an
// exchange dropped but acked was never sent again (exchanges forced by a
// new connection ignore the sender's gap, and queued ones arrive close
// together).
var errPEXEarly = errors.New("node: peer exchange: too soon after the last one; send it again later")
