package node

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/remora-p2p/remora/core/circle"
	"github.com/remora-p2p/remora/core/delivery"
	"github.com/remora-p2p/remora/core/envelope"
	"github.com/remora-p2p/remora/sdk"
)

// Errors of Send.
var (
	ErrUnknownCircle = errors.New("node: unknown circle")
	ErrNotAMember    = errors.New("node: recipient is not a member of the circle")
	ErrQuota         = errors.New("node: outbox quota reached for a recipient")
	ErrNoRecipients  = errors.New("node: the circle has no other members yet")
)

// SendRequest is a message for a circle: to every other member (To empty,
// one broadcast envelope) or to some members (direct envelopes).
type SendRequest struct {
	Circle circle.ID
	To     []peer.ID
	Body   []byte
	TTL    time.Duration
}

// SendMessage stores the message durably in the outbox and returns its ID; delivery
// goes on in the background. An undeliverable message raises an event.
func (n *Node) SendMessage(ctx context.Context, req SendRequest) (envelope.MessageID, error) {
	if c, ok := n.circleOf(req.Circle); ok {
		if err := n.stillMember(c); err != nil {
			return envelope.MessageID{}, err
		}
	}
	e, err := n.enqueue(req.Circle, req.To, envelope.KindChat, req.Body, req.TTL, nil)
	if err != nil {
		return envelope.MessageID{}, err
	}
	return e.ID, nil
}

// enqueue builds, persists and schedules an outbox entry. epoch, when set,
// seals under that (older) epoch: roster operations go to members who do not
// know the new epoch yet.
func (n *Node) enqueue(cid circle.ID, to []peer.ID, kind envelope.Kind, body []byte, ttl time.Duration, epoch *circle.Epoch) (*OutboxEntry, error) {
	return n.enqueueAs(cid, len(to) > 0, to, kind, body, ttl, epoch)
}

// enqueueAs is enqueue with the mode given: direct envelopes to each of to,
// or one broadcast envelope pending for to (every other member when to is
// empty; a sender-key hand-out names the members of its older epoch).
func (n *Node) enqueueAs(cid circle.ID, direct bool, to []peer.ID, kind envelope.Kind, body []byte, ttl time.Duration, epoch *circle.Epoch) (*OutboxEntry, error) {
	c, ok := n.circleOf(cid)
	if !ok {
		return nil, fmt.Errorf("%w %s", ErrUnknownCircle, cid)
	}
	roster := c.Roster()
	if len(to) == 0 {
		for _, m := range roster.Members() {
			if m.Peer != n.ID() {
				to = append(to, m.Peer)
			}
		}
		if len(to) == 0 {
			return nil, ErrNoRecipients
		}
	}
	for _, p := range to {
		if !roster.IsMember(p) || p == n.ID() {
			return nil, fmt.Errorf("%w: %s", ErrNotAMember, p)
		}
	}
	if ttl <= 0 {
		ttl = n.opts.DefaultTTL
	}
	now := n.opts.Now()
	var id envelope.MessageID
	if _, err := randRead(id[:]); err != nil {
		return nil, fmt.Errorf("node: message ID: %w", err)
	}
	counter := "b/" + cid.String()
	if direct {
		counter = "d/" + cid.String()
	}
	seq, err := n.nextSeq(counter)
	if err != nil {
		return nil, fmt.Errorf("node: sequence: %w", err)
	}
	e := &OutboxEntry{ID: id, Circle: cid, Kind: kind, Direct: direct, Pending: slices.Clone(to),
		Body: body, Seq: seq, Created: now, Expiry: now.Add(ttl), Channels: map[string]time.Time{}}
	if epoch != nil {
		e.Epoch = *epoch
	}
	n.mu.Lock()
	for _, p := range to {
		if n.pendingFor(p) >= n.opts.MaxPendingPerPeer {
			n.mu.Unlock()
			return nil, fmt.Errorf("%w: %s has %d undelivered messages", ErrQuota, p, n.opts.MaxPendingPerPeer)
		}
	}
	n.mu.Unlock()
	if err := n.putOutbox(e); err != nil {
		return nil, fmt.Errorf("node: outbox: %w", err)
	}
	n.mu.Lock()
	n.outbox[e.ID] = e
	n.mu.Unlock()
	n.poke()
	return e, nil
}

// pendingFor counts outbox entries waiting for p. Called with n.mu held.
func (n *Node) pendingFor(p peer.ID) int {
	c := 0
	for _, e := range n.outbox {
		if slices.Contains(e.Pending, p) {
			c++
		}
	}
	return c
}

func (n *Node) poke() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// deliveryLoop attempts pending outbox entries: on every new entry, when a
// member connects, and on a slow sweep (expiry, failed channel posts) that
// runs only while the outbox holds something.
func (n *Node) deliveryLoop(ctx context.Context) {
	sweep := time.NewTimer(0)
	defer sweep.Stop()
	for {
		only := peer.ID("")
		select {
		case <-ctx.Done():
			return
		case <-n.wake:
		case p := <-n.kick:
			only = p
		case <-sweep.C:
			n.expire()
		}
		sweep.Stop()
		n.mu.Lock()
		idle := len(n.outbox) == 0
		n.mu.Unlock()
		if !idle { // a new entry pokes the loop, which arms the sweep again
			sweep.Reset(coalesce(outboxSweep))
		}
		n.mu.Lock()
		var due []*OutboxEntry
		for _, e := range n.outbox {
			if only == "" || slices.Contains(e.Pending, only) {
				due = append(due, e)
			}
		}
		n.mu.Unlock()
		slices.SortFunc(due, func(a, b *OutboxEntry) int { return a.Created.Compare(b.Created) })
		var wg sync.WaitGroup
		sem := make(chan struct{}, 16)
		for _, e := range due {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				n.attempt(ctx, e, only)
			})
		}
		wg.Wait()
	}
}

// attempt tries the live path to each pending recipient (only one, if set),
// then posts to the channels for those the live path did not reach.
func (n *Node) attempt(ctx context.Context, e *OutboxEntry, only peer.ID) {
	c, ok := n.circleOf(e.Circle)
	if !ok {
		return
	}
	if isHandOut(e) {
		if _, err := c.HandOutKey(e.Epoch); errors.Is(err, circle.ErrHandOutClosed) {
			// A removal (or the grace window) closed its epoch: nothing
			// more goes under it; members still missing the key ask.
			n.log.Debug("sender-key hand-out dropped", "msg", e.ID, "err", err)
			n.count("key_handouts_dropped")
			n.drop(e)
			return
		}
	}
	n.mu.Lock()
	pending := slices.Clone(e.Pending)
	n.mu.Unlock()
	var missed []peer.ID
	for _, p := range pending {
		if only != "" && p != only {
			continue
		}
		if n.tryLive(ctx, c, e, p) {
			n.acked(e.ID, p)
			continue
		}
		missed = append(missed, p)
	}
	if len(missed) > 0 && only == "" {
		n.postToChannels(c, e, missed)
		n.depositMissed(ctx, c, e, missed)
		n.wakeForEntry(ctx, e, missed)
	}
}

// tryLive sends e to p over the live path if one exists or can be made in
// LiveTimeout. The transport's ack means p stored it durably.
func (n *Node) tryLive(ctx context.Context, c *circle.Circle, e *OutboxEntry, p peer.ID) bool {
	if len(n.tr.KnownAddrs(p)) == 0 && !n.tr.PathTo(p).Live() {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, n.opts.LiveTimeout)
	defer cancel()
	sealed, err := n.seal(c, e, p, envelope.Route{Channel: envelope.LiveChannel, MaxSize: 1 << 20})
	if err != nil {
		n.log.Warn("seal for live path", "msg", e.ID, "err", err)
		return false
	}
	for _, env := range sealed.Envelopes {
		if err := n.tr.Send(ctx, p, env); err != nil {
			n.log.Debug("live path failed; channels next", "peer", p, "msg", e.ID, "err", err)
			return false
		}
	}
	return true
}

// postToChannels posts e to every channel it has not been posted to: one
// broadcast envelope per channel, or one direct envelope per recipient. An
// entry counts as posted to a channel (durably, in the outbox) only once the
// channel took every envelope of it: one still in the channel's queue when
// the node stops is posted again after the restart, not lost.
func (n *Node) postToChannels(c *circle.Circle, e *OutboxEntry, to []peer.ID) {
	prio := delivery.PriorityBulk
	if e.Kind != envelope.KindChat {
		prio = delivery.PriorityControl
	}
	for _, ch := range n.channels {
		n.mu.Lock()
		_, posted := e.Channels[ch.Name]
		busy := e.posting[ch.Name]
		if !posted && !busy {
			if e.posting == nil {
				e.posting = map[string]bool{}
			}
			e.posting[ch.Name] = true
		}
		n.mu.Unlock()
		if posted || busy {
			continue
		}
		targets := []peer.ID{""}
		if e.Direct {
			targets = to
		}
		var all [][][]byte
		total := 0
		for _, p := range targets {
			sealed, err := n.seal(c, e, p, ch.route())
			if err != nil {
				n.log.Warn("seal for channel", "channel", ch.Name, "msg", e.ID, "err", err)
				all = nil
				break
			}
			n.count(fmt.Sprintf("channel_posts_kind_%d", e.Kind)) // what a circle's channel traffic is made of
			all = append(all, sealed.Envelopes)
			total += len(sealed.Envelopes)
		}
		if total == 0 {
			n.postDone(e, ch, false)
			continue
		}
		var left atomic.Int64
		var failed atomic.Bool
		left.Store(int64(total))
		done := func(r sdk.PublishResult) {
			if r.Err != nil && !failed.Swap(true) {
				n.log.Warn("channel publish failed; will retry", "channel", ch.Name, "msg", e.ID, "err", r.Err)
			}
			if left.Add(-1) == 0 {
				n.postDone(e, ch, !failed.Load())
			}
		}
		for _, envs := range all {
			ch.publish(envs, prio, "", done)
		}
	}
}

// postDone ends the posting of e to ch: taken (every envelope published) is
// noted in the outbox and counted; otherwise a later attempt posts again.
func (n *Node) postDone(e *OutboxEntry, ch *channel, taken bool) {
	n.mu.Lock()
	delete(e.posting, ch.Name)
	if taken {
		e.Channels[ch.Name] = n.opts.Now()
	}
	n.mu.Unlock()
	if !taken {
		return
	}
	if e.Kind == envelope.KindChat {
		ch.messages.Add(1)
	}
	if err := n.updateOutbox(e); err != nil {
		n.log.Error("outbox update", "err", err)
	}
}

// seal seals e for route: a broadcast envelope, or a direct one to p. The
// message ID and timestamp are the entry's, so every copy dedupes.
func (n *Node) seal(c *circle.Circle, e *OutboxEntry, p peer.ID, route envelope.Route) (*envelope.Sealed, error) {
	d := envelope.Draft{Kind: e.Kind, ID: e.ID, Sequence: e.Seq, Timestamp: e.Created, Expiry: e.Expiry, Body: e.Body}
	ek, err := n.epochKeysFor(c, e.Epoch)
	if err != nil {
		return nil, err
	}
	signer := circle.Signer(n.self)
	if !e.Direct {
		sk, err := n.broadcastKey(c, e)
		if err != nil {
			return nil, err
		}
		if ek.Epoch != envelope.Epoch(sk.Epoch) {
			// epochKeysFor falls back to the current epoch; a key of
			// another epoch would seal what nobody opens.
			return nil, fmt.Errorf("send key of epoch %s for an envelope of epoch %s", sk.Epoch, circle.Epoch(ek.Epoch))
		}
		return n.sealer.Broadcast(ek, signer, sk.Key[:], d, route)
	}
	m, ok := c.Roster().Member(p)
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotAMember, p)
	}
	rcpt, err := m.Recipient()
	if err != nil {
		return nil, fmt.Errorf("recipient %s: %w", p, err)
	}
	return n.sealer.Direct(ek, signer, rcpt, d, route)
}

// broadcastKey is the key to seal broadcast entry e with: the device's
// current send key, or, for a sender-key hand-out under an older epoch
// (circle.Outgoing.Broadcast), its chain of that epoch while the circle
// still allows it.
func (n *Node) broadcastKey(c *circle.Circle, e *OutboxEntry) (circle.SenderKey, error) {
	if isHandOut(e) {
		sk, err := c.HandOutKey(e.Epoch)
		if err != nil {
			return circle.SenderKey{}, fmt.Errorf("hand-out key: %w", err)
		}
		return sk, nil
	}
	sk, err := c.SendKey()
	if err != nil {
		return circle.SenderKey{}, fmt.Errorf("send key: %w", err)
	}
	return sk, nil
}

// isHandOut says whether e is a sender-key hand-out broadcast under an
// older epoch.
func isHandOut(e *OutboxEntry) bool {
	return !e.Direct && e.Kind == envelope.KindSenderKey && e.Epoch != (circle.Epoch{})
}

// epochKeysFor returns the keys to seal under: the current epoch's, or an
// older one still accepted (for roster operations to members who have not
// seen the new epoch yet).
func (n *Node) epochKeysFor(c *circle.Circle, e circle.Epoch) (*envelope.EpochKeys, error) {
	if e != (circle.Epoch{}) {
		for _, ek := range c.Epochs() {
			if ek.Epoch == envelope.Epoch(e) {
				return ek, nil
			}
		}
	}
	return c.SendEpochKeys()
}

// acked records that p has e durably; the entry goes when nobody is pending.
func (n *Node) acked(id envelope.MessageID, p peer.ID) {
	n.mu.Lock()
	e, ok := n.outbox[id]
	if !ok || !slices.Contains(e.Pending, p) {
		n.mu.Unlock()
		return
	}
	e.Pending = slices.DeleteFunc(e.Pending, func(q peer.ID) bool { return q == p })
	done := len(e.Pending) == 0
	n.mu.Unlock()
	n.releaseDeposits(e, p)
	n.mu.Lock()
	if done {
		delete(n.outbox, id)
	}
	n.mu.Unlock()
	var err error
	if done {
		err = n.db.OutboxDelete(id)
	} else {
		err = n.updateOutbox(e)
	}
	if err != nil {
		n.log.Error("outbox ack", "msg", id, "err", err)
	}
}

// drop removes an entry that will not be delivered.
func (n *Node) drop(e *OutboxEntry) {
	n.mu.Lock()
	_, ok := n.outbox[e.ID]
	delete(n.outbox, e.ID)
	n.mu.Unlock()
	if !ok {
		return
	}
	if err := n.db.OutboxDelete(e.ID); err != nil {
		n.log.Error("outbox drop", "msg", e.ID, "err", err)
	}
}

// expire drops entries past their expiry and tells the app.
func (n *Node) expire() {
	now := n.opts.Now()
	n.mu.Lock()
	var gone []*OutboxEntry
	for id, e := range n.outbox {
		if now.After(e.Expiry) {
			gone = append(gone, e)
			delete(n.outbox, id)
		}
	}
	n.mu.Unlock()
	for _, e := range gone {
		if err := n.db.OutboxDelete(e.ID); err != nil {
			n.log.Error("outbox expire", "err", err)
		}
		if e.Kind == envelope.KindChat {
			n.event("undeliverable", e.ID.String(), "message %s expired before %d recipient(s) got it: %v", e.ID, len(e.Pending), e.Pending)
		}
	}
}

// outboxSweep is how often a non-empty outbox is swept.
const outboxSweep = 10 * time.Second

// queueAck schedules a signed ack of id to its sender.
func (n *Node) queueAck(cid circle.ID, to peer.ID, id envelope.MessageID) {
	n.mu.Lock()
	k := ackKey{cid, to}
	n.acks[k] = append(n.acks[k], id)
	n.mu.Unlock()
	select {
	case n.ackKick <- struct{}{}:
	default:
	}
}

// ackLoop sends batched signed acks: one direct envelope of kind ack per
// (circle, sender), through the outbox like any message (live path first).
// It sleeps until an ack is queued, then gathers for AckDelay.
func (n *Node) ackLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.ackKick:
		}
		if sdk.Sleep(ctx, n.opts.AckDelay) != nil {
			return
		}
		n.mu.Lock()
		batch := n.acks
		n.acks = map[ackKey][]envelope.MessageID{}
		n.mu.Unlock()
		for k, ids := range batch {
			for len(ids) > 0 {
				part := ids[:min(len(ids), 256)]
				ids = ids[len(part):]
				if _, err := n.enqueue(k.circle, []peer.ID{k.to}, envelope.KindAck, encodeAck(part), 0, nil); err != nil {
					n.log.Warn("ack", "to", k.to, "err", err)
				}
			}
		}
	}
}

// encodeAck: uvarint count ‖ message IDs.
func encodeAck(ids []envelope.MessageID) []byte {
	b := binary.AppendUvarint(nil, uint64(len(ids)))
	for _, id := range ids {
		b = append(b, id[:]...)
	}
	return b
}

func decodeAck(b []byte) ([]envelope.MessageID, error) {
	c, k := binary.Uvarint(b)
	if k <= 0 || c > 4096 || uint64(len(b)-k) != c*16 {
		return nil, errors.New("node: malformed ack")
	}
	b = b[k:]
	ids := make([]envelope.MessageID, c)
	for i := range ids {
		copy(ids[i][:], b[i*16:])
	}
	return ids, nil
}

// Posted counts outbox entries (messages, not control traffic) that went to
// at least one channel and still wait for an ack.
func (n *Node) Posted() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, e := range n.outbox {
		if e.Kind == envelope.KindChat && len(e.Channels) > 0 {
			c++
		}
	}
	return c
}

// sharedCircle returns a circle p is a member of.
func (n *Node) sharedCircle(p peer.ID) *circle.Circle {
	for _, c := range n.allCircles() {
		if c.Roster().IsMember(p) {
			return c
		}
	}
	return nil
}
