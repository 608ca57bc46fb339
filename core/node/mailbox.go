package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/core/circle"
	"github.com/remora-p2p/remora/core/delivery"
	"github.com/remora-p2p/remora/core/envelope"
	"github.com/remora-p2p/remora/core/mailbox"
	"github.com/remora-p2p/remora/core/transport"
	"github.com/remora-p2p/remora/sdk"
)

// MailboxOptions configure friends' mailboxes (core/mailbox): what this
// device keeps for other members, and how it uses theirs.
type MailboxOptions struct {
	// Quota is the bytes of envelopes kept for other members. Zero takes
	// the default: DefaultMailboxQuota on a device that may relay (Relay
	// set), none otherwise. Negative offers no mailbox.
	Quota int64
	// Expiry is the longest an envelope is kept for another member
	// (default 7 days).
	Expiry time.Duration
	// Copies is how many friends each envelope for an offline member is
	// handed to (default 2).
	Copies int
	// Wake, when set, is this device's wake-up registration, sent to every
	// member it connects to that keeps a mailbox.
	Wake *mailbox.Registration
	// WakeInterval is the least time between two wake-ups this device
	// sends one sleeping member (default 1 minute).
	WakeInterval time.Duration
}

// DefaultMailboxQuota is what a relaying device keeps for its friends.
const DefaultMailboxQuota = 32 << 20

// Back-off after a friend refused a deposit.
const (
	mailboxFullBackoff = 10 * time.Minute
	mailboxOffBackoff  = time.Hour
)

// Deposit is one envelope of an outbox entry handed to a friend's mailbox.
type Deposit struct {
	To     peer.ID    `json:"to"`
	Holder peer.ID    `json:"holder"`
	ID     mailbox.ID `json:"id"`
	Size   int        `json:"size"`
	At     time.Time  `json:"at"`
}

// mailboxState is the node's side of friends' mailboxes.
type mailboxState struct {
	box   *mailbox.Box
	waker *mailbox.Waker

	mu       sync.Mutex
	refused  map[peer.ID]time.Time // holder → try again after
	serving  map[peer.ID]bool      // recipients being served now
	again    map[peer.ID]bool      // served while serving: go round once more
	release  []mailbox.ID          // delivered to us, to release everywhere
	relKick  chan struct{}
	received map[peer.ID]int64 // holder → envelopes it delivered to us
}

func (n *Node) openMailbox(ctx context.Context) error {
	o := &n.opts.Mailbox
	if o.Quota == 0 && n.opts.Relay != nil {
		o.Quota = DefaultMailboxQuota
	}
	if o.Copies <= 0 {
		o.Copies = 2
	}
	backend := n.db.Mailbox()
	box, err := mailbox.Open(ctx, mailbox.Options{Quota: max(o.Quota, 0), Expiry: o.Expiry, Backend: backend, Now: n.opts.Now})
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	waker, err := mailbox.NewWaker(ctx, mailbox.WakerOptions{Backend: backend, MinInterval: o.WakeInterval, Now: n.opts.Now})
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.mb = &mailboxState{box: box, waker: waker, refused: map[peer.ID]time.Time{}, serving: map[peer.ID]bool{},
		again: map[peer.ID]bool{}, relKick: make(chan struct{}, 1), received: map[peer.ID]int64{}}
	return nil
}

// mailboxTags returns p's tags under every epoch of every circle both are
// in (current and grace-window ones).
func (n *Node) mailboxTags(p peer.ID) []mailbox.Tag {
	var out []mailbox.Tag
	for _, c := range n.allCircles() {
		if !c.Roster().IsMember(p) {
			continue
		}
		secrets, _ := c.EpochSecrets()
		for _, s := range secrets {
			out = append(out, mailbox.TagFor(s.Bytes(), p))
		}
	}
	return out
}

// memberOfTag finds the member a tag names, if any.
func (n *Node) memberOfTag(t mailbox.Tag) (peer.ID, bool) {
	for _, c := range n.allCircles() {
		secrets, _ := c.EpochSecrets()
		for _, m := range c.Roster().Members() {
			for _, s := range secrets {
				if mailbox.TagFor(s.Bytes(), m.Peer) == t {
					return m.Peer, true
				}
			}
		}
	}
	return "", false
}

// depositMissed hands e, for recipients the live path did not reach, to
// friends with a live path, until Copies friends hold it. A friend whose
// mailbox is full or off is left alone for a while; the entry stays in the
// outbox, so nothing is lost: the next sweep tries other friends.
func (n *Node) depositMissed(ctx context.Context, c *circle.Circle, e *OutboxEntry, missed []peer.ID) {
	friends := n.connectedMembers()
	if len(friends) == 0 {
		return
	}
	secret, err := c.EpochSecrets()
	if len(secret) == 0 {
		n.log.Debug("mailbox deposit: no epoch secret", "err", err)
		return
	}
	now := n.opts.Now()
	// The outbox entry changes under n.mu (a removal cuts its Pending):
	// seal from a copy taken under it.
	snap := n.snapshot(e)
	for _, p := range missed {
		n.mu.Lock()
		var have []peer.ID
		for _, d := range e.Deposits {
			if d.To == p && !slices.Contains(have, d.Holder) {
				have = append(have, d.Holder)
			}
		}
		n.mu.Unlock()
		if len(have) >= n.opts.Mailbox.Copies {
			continue
		}
		var sealed *envelope.Sealed
		tag := mailbox.TagFor(secret[0].Bytes(), p)
		for _, f := range friends {
			if f == p || slices.Contains(have, f) || !c.Roster().IsMember(f) || n.mailboxRefused(f, now) {
				continue
			}
			if sealed == nil {
				// Always direct: a broadcast envelope would be readable by
				// the friend, who holds the sender's chain key.
				d := *snap
				d.Direct = true
				if snap.Kind == envelope.KindChat && !snap.Direct {
					// ... and marked as the group message it is, or the
					// app would see a direct message carrying a number
					// of the group sequence (out of order with both).
					d.Kind = envelope.KindGroupChat
				}
				if sealed, err = n.seal(c, &d, p, envelope.Route{Channel: mailbox.Channel, MaxSize: mailbox.MaxEnvelope}); err != nil {
					n.log.Warn("seal for a mailbox", "msg", e.ID, "err", err)
					return
				}
			}
			if n.depositWith(ctx, f, p, tag, e, sealed.Envelopes) {
				have = append(have, f)
				if len(have) >= n.opts.Mailbox.Copies {
					break
				}
			}
		}
	}
}

// depositWith hands envelopes to friend f for p and records the deposit.
func (n *Node) depositWith(ctx context.Context, f, p peer.ID, tag mailbox.Tag, e *OutboxEntry, envs [][]byte) bool {
	ctx, cancel := context.WithTimeout(ctx, n.opts.LiveTimeout)
	defer cancel()
	var deps []Deposit
	for _, env := range envs {
		err := n.tr.Send(ctx, f, mailbox.Deposit(tag, e.Expiry, env))
		var re *transport.RemoteError
		if errors.As(err, &re) {
			if r := mailbox.Refusal(re.Reason); r != nil {
				back := mailboxFullBackoff
				if errors.Is(r, mailbox.ErrOff) {
					back = mailboxOffBackoff
				} else {
					n.count("mailbox_full_refusals")
					n.event("mailbox_full", f.String(), "%s's mailbox is full; trying other friends", f)
				}
				n.mb.mu.Lock()
				n.mb.refused[f] = n.opts.Now().Add(back)
				n.mb.mu.Unlock()
			}
		}
		if err != nil {
			n.log.Debug("mailbox deposit failed", "holder", f, "for", p, "err", err)
			return false
		}
		deps = append(deps, Deposit{To: p, Holder: f, ID: mailbox.IDOf(env), Size: len(env), At: n.opts.Now()})
	}
	n.mu.Lock()
	e.Deposits = append(e.Deposits, deps...)
	n.mu.Unlock()
	if err := n.updateOutbox(e); err != nil {
		n.log.Error("outbox update", "err", err)
	}
	n.count("mailbox_deposits")
	return true
}

func (n *Node) mailboxRefused(f peer.ID, now time.Time) bool {
	n.mb.mu.Lock()
	defer n.mb.mu.Unlock()
	return now.Before(n.mb.refused[f])
}

// handleMailboxFrame serves a mailbox frame from live peer from. Returning
// an error NACKs it with the error's text (a deposit's "mailbox full").
func (n *Node) handleMailboxFrame(ctx context.Context, from peer.ID, raw []byte) error {
	f, err := mailbox.Parse(raw)
	if err != nil {
		n.count("dropped_malformed")
		return err
	}
	switch f.Type {
	case mailbox.FrameRegister:
		if !n.mb.box.Offered() {
			return mailbox.ErrOff
		}
		if err := n.mb.waker.Register(from, *f.Register); err != nil {
			return err
		}
		n.count("mailbox_wake_registrations")
		return nil
	case mailbox.FrameRelease:
		k, err := n.mb.box.Release(from, n.mailboxTags(from), f.IDs)
		if k > 0 {
			n.count("mailbox_released")
		}
		return err
	case mailbox.FrameDeliver:
		return n.receiveDelivered(ctx, from, f.Envelope)
	}
	// A deposit.
	if _, err := n.mb.box.Put(from, f.Tag, f.Expiry, f.Envelope); err != nil {
		if errors.Is(err, mailbox.ErrFull) {
			n.count("mailbox_refused_full")
		}
		return err
	}
	n.count("mailbox_held")
	if p, ok := n.memberOfTag(f.Tag); ok && p != from {
		if n.tr.PathTo(p).Live() {
			go n.serveMailbox(context.WithoutCancel(ctx), p)
		} else {
			go n.wakeMember(context.WithoutCancel(ctx), p)
		}
	}
	return nil
}

// receiveDelivered takes an envelope a friend kept for us. Only a failure
// to store NACKs it (the friend keeps it); anything else is dropped and
// counted like a channel's item, so a bad item is not offered forever.
func (n *Node) receiveDelivered(ctx context.Context, from peer.ID, env []byte) error {
	err := n.receive(ctx, mailbox.Channel, env, "mailbox:"+from.String(), "")
	var se *storeError
	if errors.As(err, &se) {
		return err
	}
	n.mb.mu.Lock()
	n.mb.received[from]++
	n.mb.release = append(n.mb.release, mailbox.IDOf(env))
	n.mb.mu.Unlock()
	select {
	case n.mb.relKick <- struct{}{}:
	default:
	}
	return nil
}

// serveMailbox hands member p what this node keeps for it, oldest first;
// each envelope goes once p acked it (stored durably).
func (n *Node) serveMailbox(ctx context.Context, p peer.ID) {
	n.mb.mu.Lock()
	if n.mb.serving[p] {
		n.mb.again[p] = true
		n.mb.mu.Unlock()
		return
	}
	n.mb.serving[p] = true
	n.mb.mu.Unlock()
	defer func() {
		n.mb.mu.Lock()
		delete(n.mb.serving, p)
		again := n.mb.again[p]
		delete(n.mb.again, p)
		n.mb.mu.Unlock()
		if again {
			go n.serveMailbox(ctx, p)
		}
	}()
	n.expireMailbox()
	tags := n.mailboxTags(p)
	items := n.mb.box.For(tags)
	// A window of deliveries in flight hides the recipient's store latency;
	// delivered items are dropped in batches, one store transaction each
	// (a crash in between hands a copy over twice: the recipient dedupes).
	var (
		mu     sync.Mutex
		done   []mailbox.ID
		failed bool
		wg     sync.WaitGroup
	)
	flush := func(min int) {
		mu.Lock()
		batch := done
		if len(batch) < min {
			mu.Unlock()
			return
		}
		done = nil
		mu.Unlock()
		if _, err := n.mb.box.Release(p, tags, batch); err != nil {
			n.log.Warn("mailbox release", "err", err)
		}
	}
	sem := make(chan struct{}, mailboxWindow)
	for _, it := range items {
		mu.Lock()
		stop := failed
		mu.Unlock()
		if stop || ctx.Err() != nil {
			break
		}
		env, err := n.mb.box.Envelope(it.ID)
		if err != nil {
			continue // released meanwhile
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			sctx, cancel := context.WithTimeout(ctx, n.opts.LiveTimeout)
			err := n.tr.Send(sctx, p, mailbox.Deliver(env))
			cancel()
			mu.Lock()
			if err != nil {
				failed = true
			} else {
				done = append(done, it.ID)
			}
			mu.Unlock()
			if err != nil {
				n.log.Debug("mailbox delivery", "to", p, "err", err)
				return
			}
			n.count("mailbox_delivered")
		})
		flush(mailboxReleaseBatch)
	}
	wg.Wait()
	flush(0)
}

// Delivery of kept envelopes: in flight at once, and released per batch.
const (
	mailboxWindow       = 8
	mailboxReleaseBatch = 64
)

// releaseLoop tells every connected member which envelopes reached us
// through a mailbox, so friends holding other copies drop them too.
func (n *Node) releaseLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.mb.relKick:
		}
		if sdk.Sleep(ctx, n.opts.AckDelay) != nil {
			return
		}
		n.mb.mu.Lock()
		ids := n.mb.release
		n.mb.release = nil
		n.mb.mu.Unlock()
		for len(ids) > 0 {
			part := ids[:min(len(ids), mailbox.MaxRelease)]
			ids = ids[len(part):]
			n.sendRelease(ctx, n.connectedMembers(), part)
		}
	}
}

func (n *Node) sendRelease(ctx context.Context, to []peer.ID, ids []mailbox.ID) {
	for _, f := range to {
		sctx, cancel := context.WithTimeout(ctx, n.opts.LiveTimeout)
		if err := n.tr.Send(sctx, f, mailbox.Release(ids)); err != nil {
			n.log.Debug("mailbox release", "to", f, "err", err)
		}
		cancel()
	}
}

// releaseDeposits drops, at the friends that hold them, the copies of e
// deposited for p, which acked it.
func (n *Node) releaseDeposits(e *OutboxEntry, p peer.ID) {
	byHolder := map[peer.ID][]mailbox.ID{}
	n.mu.Lock()
	keep := e.Deposits[:0]
	for _, d := range e.Deposits {
		if d.To == p {
			byHolder[d.Holder] = append(byHolder[d.Holder], d.ID)
		} else {
			keep = append(keep, d)
		}
	}
	e.Deposits = keep
	n.mu.Unlock()
	if len(byHolder) == 0 {
		return
	}
	go func() {
		for h, ids := range byHolder {
			if n.tr.PathTo(h).Live() {
				n.sendRelease(context.Background(), []peer.ID{h}, ids)
			}
		}
	}()
}

// onMemberConnected serves p's mailbox and registers for wake-ups.
func (n *Node) onMemberConnected(ctx context.Context, p peer.ID) {
	go n.serveMailbox(ctx, p)
	if r := n.opts.Mailbox.Wake; r != nil {
		raw, err := mailbox.Register(*r)
		if err == nil {
			sctx, cancel := context.WithTimeout(ctx, n.opts.LiveTimeout)
			err = n.tr.Send(sctx, p, raw)
			cancel()
		}
		if err == nil {
			n.count("mailbox_wake_registered")
		} else {
			n.log.Debug("wake-up registration", "with", p, "err", err)
		}
	}
}

// wakeForEntry wakes the sleeping recipients of a new chat message our own
// live path did not reach, once per message (and at most once per interval
// per device: the Waker's limit).
func (n *Node) wakeForEntry(ctx context.Context, e *OutboxEntry, missed []peer.ID) {
	if e.Kind != envelope.KindChat {
		return
	}
	for _, p := range missed {
		n.mu.Lock()
		done := slices.Contains(e.woken, p)
		if !done {
			e.woken = append(e.woken, p)
		}
		n.mu.Unlock()
		if !done {
			go n.wakeMember(ctx, p)
		}
	}
}

// wakeMember wakes p if it registered with us: a content-free POST to its
// push endpoint, or a wake envelope on our push-capable channels.
func (n *Node) wakeMember(ctx context.Context, p peer.ID) {
	sent, err := n.mb.waker.Wake(ctx, p, func(ctx context.Context) error { return n.wakeOnChannels(p) })
	if err != nil {
		n.log.Warn("wake-up", "member", p, "err", err)
	}
	if sent {
		n.count("mailbox_wakeups")
	}
}

// wakeOnChannels posts an empty direct envelope of kind wake to p on every
// push-capable channel: the service pushes it to the device (IMAP IDLE,
// Matrix /sync, Mastodon streaming), which then connects to its friends.
func (n *Node) wakeOnChannels(p peer.ID) error {
	c := n.sharedCircle(p)
	if c == nil {
		return fmt.Errorf("node: wake-up: %s shares no circle", p)
	}
	now := n.opts.Now()
	posted := 0
	for _, ch := range n.channels {
		if !ch.caps.Push {
			continue
		}
		e := &OutboxEntry{Circle: c.ID(), Kind: envelope.KindWake, Direct: true, Created: now, Expiry: now.Add(time.Hour)}
		if _, err := randRead(e.ID[:]); err != nil {
			return err
		}
		sealed, err := n.seal(c, e, p, ch.route())
		if err != nil {
			return fmt.Errorf("node: wake-up: %w", err)
		}
		ch.publish(sealed.Envelopes, delivery.PriorityControl, "", nil)
		posted++
	}
	if posted == 0 {
		return errors.New("node: wake-up: no push-capable channel")
	}
	return nil
}

// handleWake answers a wake-up: connect to the members now, so their
// mailboxes flow to us.
func (n *Node) handleWake(msg *envelope.Message) {
	n.count("wakeups_received")
	n.event("wake", "", "woken up by a friend; connecting to members")
	for _, c := range n.allCircles() {
		for _, m := range c.Roster().Members() {
			if m.Peer != n.ID() && !n.tr.PathTo(m.Peer).Live() {
				n.dial(m.Peer)
			}
		}
	}
}

// forgetInMailbox drops a removed member's wake-up registration and the
// envelopes it deposited.
func (n *Node) forgetInMailbox(p peer.ID) {
	if err := n.mb.waker.Forget(p); err != nil {
		n.log.Warn("wake-up registration", "err", err)
	}
	if k, err := n.mb.box.DropFrom(p); err != nil {
		n.log.Warn("mailbox", "err", err)
	} else if k > 0 {
		n.count("mailbox_dropped_removed")
	}
}

// maintainMailbox runs every minute: expiry, and a new hand-over to each
// connected member something is kept for (one that failed half-way, or a
// member that connected while we were busy).
func (n *Node) maintainMailbox(ctx context.Context) {
	n.expireMailbox()
	for _, p := range n.connectedMembers() {
		if len(n.mb.box.For(n.mailboxTags(p))) > 0 {
			go n.serveMailbox(ctx, p)
		}
	}
}

// expireMailbox drops what was kept for others past its expiry.
func (n *Node) expireMailbox() {
	k, err := n.mb.box.Expire()
	if err != nil {
		n.log.Warn("mailbox expiry", "err", err)
	}
	for range k {
		n.count("mailbox_expired")
	}
}

// mailboxStatus is the mailbox as doctor shows it.
func (n *Node) mailboxStatus() *api.Mailbox {
	s := n.mb.box.Stats()
	w := n.mb.waker.Stats()
	out := &api.Mailbox{Offered: s.Offered, Quota: s.Quota, Expiry: s.Expiry.String(), HeldItems: s.Items, HeldBytes: s.Bytes,
		HeldRecipients: s.Recipients, WakeRegistered: w.Registered, WakePushed: w.Pushed, WakeChannel: w.Channel,
		WakeLimited: w.Limited, WakeFailed: w.Failed, WakeError: w.LastError, WakeOwn: n.opts.Mailbox.Wake != nil}
	byHolder := map[peer.ID]*api.MailboxHolder{}
	n.mu.Lock()
	for _, e := range n.outbox {
		for _, d := range e.Deposits {
			h := byHolder[d.Holder]
			if h == nil {
				h = &api.MailboxHolder{PeerID: d.Holder.String()}
				byHolder[d.Holder] = h
			}
			h.Items++
			h.Bytes += int64(d.Size)
		}
	}
	n.mu.Unlock()
	n.mb.mu.Lock()
	for f, k := range n.mb.received {
		h := byHolder[f]
		if h == nil {
			h = &api.MailboxHolder{PeerID: f.String()}
			byHolder[f] = h
		}
		h.Delivered = k
	}
	n.mb.mu.Unlock()
	for _, h := range byHolder {
		out.Holders = append(out.Holders, *h)
	}
	slices.SortFunc(out.Holders, func(a, b api.MailboxHolder) int {
		if a.PeerID < b.PeerID {
			return -1
		}
		return 1
	})
	return out
}
