package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/remora-p2p/remora/core/circle"
	"github.com/remora-p2p/remora/core/envelope"
	"github.com/remora-p2p/remora/core/mailbox"
	"github.com/remora-p2p/remora/core/store"
	"github.com/remora-p2p/remora/sdk"
)

// handleLive receives a message on the live path. Returning nil acks it to
// the sender, which then counts it delivered: so nil only once it is stored.
func (n *Node) handleLive(ctx context.Context, from peer.ID, raw []byte) error {
	path := string(n.tr.PathTo(from))
	err := n.receive(ctx, envelope.LiveChannel, raw, path, from)
	if err != nil {
		return err
	}
	n.touch(from, "")
	return nil
}

// receiveFromChannel receives one envelope read from a channel. Garbage and
// foreign envelopes are dropped and counted, never returned as errors (that
// would stop the subscription); only a failure to store is an error.
func (n *Node) receiveFromChannel(ctx context.Context, ch *channel, from string, raw []byte) error {
	ch.received.Add(1)
	err := n.receiveFrom(ctx, ch.ID, ch.ID+"/"+from, raw, "channel:"+ch.Name, "")
	var se *storeError
	if errors.As(err, &se) {
		return err
	}
	return nil
}

// storeError marks failures to persist, which must not be acked.
type storeError struct{ err error }

func (e *storeError) Error() string { return e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

// receive opens raw (sealed for channelID) and handles it. liveFrom is the
// live peer it came from, if any.
func (n *Node) receive(ctx context.Context, channelID string, raw []byte, path string, liveFrom peer.ID) error {
	return n.receiveFrom(ctx, channelID, channelID+"/"+liveFrom.String(), raw, path, liveFrom)
}

// receiveFrom is receive with the source that posted raw, as far as the
// service or connection says (channel ID / posting account or live peer):
// join frames, unsigned, are bounded per source.
func (n *Node) receiveFrom(ctx context.Context, channelID, source string, raw []byte, path string, liveFrom peer.ID) error {
	if isJoinFrame(raw) {
		return n.handleJoinFrame(ctx, channelID, source, raw)
	}
	if liveFrom != "" && mailbox.IsFrame(raw) {
		return n.handleMailboxFrame(ctx, liveFrom, raw)
	}
	msg, err := n.opener.Open(channelID, raw)
	if err != nil {
		return n.openFailed(channelID, raw, path, err)
	}
	if liveFrom != "" && msg.Sender != liveFrom {
		// Forwarding is allowed (peer exchange, relays of envelopes): the
		// signature names the author; the live peer is only the carrier.
		n.count("forwarded")
	}
	return n.dispatch(ctx, msg, path)
}

// openFailed classifies an envelope that did not open.
func (n *Node) openFailed(channelID string, raw []byte, path string, err error) error {
	var oe *envelope.OpenError
	errors.As(err, &oe)
	switch {
	case errors.Is(err, envelope.ErrPending):
		// The reassembler holds fragments in memory only: keep the raw
		// fragment until its message completes, so a crash after the
		// channel cursor moved loses nothing (retryHeld feeds it back).
		if oe != nil && oe.Sender != "" {
			return n.holdFragment(oe.Sender, fragmentKey(oe.Sender, oe.ID), channelID, path, raw)
		}
		return nil
	case errors.Is(err, envelope.ErrReplay):
		n.count("dropped_replay")
		return nil
	case errors.Is(err, envelope.ErrKeyNotYet) && oe != nil && oe.Sender == n.ID():
		n.count("ignored_own_echo") // our own envelope read back from a channel
		return nil
	case errors.Is(err, envelope.ErrKeyNotYet):
		key, prefix := heldKey(raw), ""
		if oe != nil && oe.Sender != "" {
			prefix = keyWaitPrefix(oe.Sender)
			key = prefix + key
		}
		h := &store.HeldEnvelope{Key: key, Channel: channelID, Path: path, Raw: raw, Until: n.opts.Now().Add(n.opts.DefaultTTL)}
		if held, err := n.hold(h, prefix, "waiting for its key"); err != nil || !held {
			return err
		}
		n.count("held_key_not_yet")
		if oe != nil {
			n.requestKey(oe.Circle, circle.Epoch(oe.Epoch), oe.Sender)
		}
		return nil
	case errors.Is(err, envelope.ErrNotForUs) && oe != nil && oe.Circle == (envelope.CircleID{}) && n.joinWaiting():
		// No epoch we know routes it, and a join of ours is waiting: it
		// may be for the circle we are joining, sent as the inviter let us
		// in and read before its welcome reached us (the sender key of a
		// member who then goes offline would be lost, and with it every
		// message under it). Held, within the held quotas, until the
		// join ends (retryHeld then opens or drops it).
		h := &store.HeldEnvelope{Key: joinWaitPrefix + heldKey(raw), Channel: channelID, Path: path, Raw: raw, Until: n.opts.Now().Add(joinHold)}
		if held, err := n.hold(h, joinWaitPrefix, "read while a join was waiting"); err != nil || !held {
			return err
		}
		n.count("held_join_waiting")
		return nil
	case errors.Is(err, envelope.ErrNotForUs):
		n.count("ignored_not_for_us")
	case errors.Is(err, envelope.ErrUnsupported):
		n.count("ignored_unsupported")
	case errors.Is(err, envelope.ErrNotMember):
		n.count("dropped_not_member")
	case errors.Is(err, envelope.ErrForged):
		n.count("dropped_forged")
	case errors.Is(err, envelope.ErrExpired), errors.Is(err, envelope.ErrFuture):
		n.count("dropped_time")
	default:
		n.count("dropped_malformed")
	}
	n.log.Debug("envelope dropped", "channel", channelID, "err", err)
	return err
}

// fragmentKey prefixes the held fragments of one message.
func fragmentKey(sender peer.ID, id envelope.MessageID) string {
	return fragmentSenderPrefix(sender) + id.String() + ":"
}

// fragmentSenderPrefix prefixes all held fragments of one sender.
func fragmentSenderPrefix(sender peer.ID) string { return "f:" + sender.String() + ":" }

// joinWaitPrefix prefixes the envelopes no known epoch routes, held
// while a join of ours waits; joinHold is how long one is kept.
const (
	joinWaitPrefix = "j:"
	joinHold       = time.Hour
)

// keyWaitPrefix prefixes the envelopes of one sender held for its key.
func keyWaitPrefix(sender peer.ID) string { return "k:" + sender.String() + ":" }

// hold keeps h durably within the held quotas: per sender (the prefix
// names it, and whether it waits for a key or is a fragment), at most
// MaxHeldPerPeer envelopes and MaxHeldBytesPerPeer bytes; over everything
// held, MaxHeldBytes. Past them h is dropped, counted (dropped_held_quota)
// and the first drop per sender and kind logged. The sender named is the
// one the envelope's hint points at, before any signature: a member can
// spend another's quota, but only delay an honest sender's messages: they
// stay unacked in its outbox, tried again live when the two connect.
func (n *Node) hold(h *store.HeldEnvelope, prefix, what string) (bool, error) {
	q := store.HeldQuota{TotalBytes: n.opts.MaxHeldBytes}
	if prefix != "" {
		q.Prefix, q.MaxItems, q.MaxBytes = prefix, n.opts.MaxHeldPerPeer, n.opts.MaxHeldBytesPerPeer
	}
	err := n.db.PutHeldWithin(h, q)
	var qe *store.HeldQuotaError
	if errors.As(err, &qe) {
		n.count("dropped_held_quota")
		scope := prefix
		if qe.Total {
			scope = "total"
		}
		if _, logged := n.quotaLogged.LoadOrStore(scope, true); !logged {
			if qe.Total {
				n.log.Warn("held envelopes: all held bytes reached their quota; dropping new ones until some open or expire (counted as dropped_held_quota)",
					"what", what, "held_bytes", qe.Bytes, "quota_bytes", n.opts.MaxHeldBytes)
			} else {
				n.log.Warn("held envelopes: a sender reached its quota; dropping its new ones until some open or expire (counted as dropped_held_quota)",
					"what", what, "sender", strings.Split(prefix, ":")[1], "held", qe.Items, "held_bytes", qe.Bytes,
					"quota", n.opts.MaxHeldPerPeer, "quota_bytes", n.opts.MaxHeldBytesPerPeer)
			}
		}
		return false, nil
	}
	if err != nil {
		return false, &storeError{fmt.Errorf("node: hold envelope (%s): %w", what, err)}
	}
	return true, nil
}

func heldKey(raw []byte) string {
	h := sha256.Sum256(raw)
	return hex.EncodeToString(h[:16])
}

// dispatch handles an opened message by kind.
func (n *Node) dispatch(ctx context.Context, msg *envelope.Message, path string) error {
	c := keys{n}.circle(msg.Circle)
	if c == nil {
		n.count("ignored_not_for_us")
		return nil
	}
	if msg.Fragments > 1 {
		n.dropFragments(msg.Sender, msg.ID)
	}
	if msg.Sender == n.ID() {
		n.count("ignored_own_echo") // our own envelope read back from a channel
		return nil
	}
	// A copy read from a channel or handed over by a friend's mailbox is
	// acked by a signed ack (the sender is not on the line).
	viaChannel := strings.HasPrefix(path, "channel:") || strings.HasPrefix(path, "mailbox:")
	if controlKind(msg.Kind) {
		// Chat is deduplicated in the inbox transaction; every other
		// kind a replay could make us answer or apply again is
		// deduplicated here, against the same durable set.
		seen, err := n.db.Remember(msg.DedupeKey(), msg.DedupeUntil)
		if err != nil {
			return &storeError{fmt.Errorf("node: dedupe: %w", err)}
		}
		if seen {
			n.count("duplicates_removed")
			if viaChannel && acksFromChannel(msg) {
				n.queueAck(c.ID(), msg.Sender, msg.ID) // our first ack may have been lost
			}
			return nil
		}
	}
	switch msg.Kind {
	case envelope.KindChat, envelope.KindGroupChat:
		// A group message sealed to us for a friend's mailbox is still a
		// group message: not direct, numbered in the sender's group stream.
		m := &store.InboxMessage{Circle: c.ID(), Sender: msg.Sender.String(), ID: msg.ID, Kind: uint16(envelope.KindChat),
			SenderSeq: msg.Sequence.Number, Timestamp: msg.Timestamp, Body: msg.Body,
			Direct: msg.Mode == envelope.ModeDirect && msg.Kind == envelope.KindChat,
			Path:   path, Received: n.opts.Now(), DedupeKey: msg.DedupeKey(), DedupeUntil: msg.DedupeUntil}
		dup, err := n.db.InboxPut(m)
		if err != nil {
			return &storeError{fmt.Errorf("node: inbox: %w", err)}
		}
		if dup {
			n.count("duplicates_removed")
		} else {
			n.notifyInbox()
		}
	case envelope.KindAck:
		ids, err := decodeAck(msg.Body)
		if err != nil {
			n.count("dropped_malformed")
			return nil
		}
		for _, id := range ids {
			n.acked(id, msg.Sender)
		}
		return nil // acks are not acked
	case envelope.KindPresence:
		n.handlePresence(msg, path)
		return nil // presence is republished, not acked
	case envelope.KindPeerExchange:
		if !viaChannel {
			if err := n.handlePEX(msg, path); err != nil {
				// Refused (NACKed): its records go again in a new
				// exchange; this one must not count as seen.
				if ferr := n.db.Forget(msg.DedupeKey()); ferr != nil {
					return &storeError{ferr}
				}
				return err
			}
		}
		return nil // gossip is resent, not acked
	case envelope.KindSenderKey, envelope.KindKeyQuery:
		if msg.Mode != envelope.ModeDirect && msg.Kind != envelope.KindSenderKey {
			n.count("dropped_broadcast_key_msg") // requests are answered pairwise
			return nil
		}
		if err := n.handleKeyMsg(c, msg); err != nil {
			n.log.Warn("key message", "from", msg.Sender, "err", err)
			// Not applied: a copy sent again is not a duplicate.
			if ferr := n.db.Forget(msg.DedupeKey()); ferr != nil {
				return &storeError{ferr}
			}
		}
	case envelope.KindPunch:
		n.handlePunch(msg)
		return nil // ephemeral: not acked
	case envelope.KindWake:
		if msg.Mode == envelope.ModeDirect {
			n.handleWake(msg)
		}
		return nil // ephemeral: not acked
	case envelope.KindRelayList:
		n.handleRelayList(msg)
	case envelope.KindRoster:
		if err := n.handleRosterOp(c, msg.Sender, msg.Body); err != nil {
			n.log.Warn("roster operation", "from", msg.Sender, "err", err)
			if errors.Is(err, circle.ErrRosterBacklog) {
				// Not kept: no ack, so the sender tries again (live),
				// and its copy must not count as a duplicate then.
				n.count("dropped_roster_backlog")
				if ferr := n.db.Forget(msg.DedupeKey()); ferr != nil {
					return &storeError{ferr}
				}
				return err
			}
		}
	default:
		n.count("ignored_unknown_kind")
		return nil
	}
	if viaChannel && (acksFromChannel(msg) || msg.Kind == envelope.KindChat) {
		n.queueAck(c.ID(), msg.Sender, msg.ID)
	}
	n.touch(msg.Sender, "")
	return nil
}

// acksFromChannel says whether a control message read from a channel is
// acked: direct ones, and sender-key hand-outs broadcast after an add
// (their outbox entry waits for each member of the older epoch).
func acksFromChannel(msg *envelope.Message) bool {
	return msg.Mode == envelope.ModeDirect || msg.Kind == envelope.KindSenderKey
}

// controlKind says whether a kind is deduplicated by dispatch: every known
// kind but chat (the inbox does it) and presence, whose records are
// ordered by their own persisted sequence (the highest wins, a replayed one
// is not newer) and must be read again from the boards after a restart.
func controlKind(k envelope.Kind) bool {
	switch k {
	case envelope.KindAck, envelope.KindPeerExchange, envelope.KindSenderKey, envelope.KindKeyQuery,
		envelope.KindPunch, envelope.KindWake, envelope.KindRoster:
		return true
	}
	return false
}

func (n *Node) notifyInbox() {
	n.mu.Lock()
	close(n.notify)
	n.notify = make(chan struct{})
	n.mu.Unlock()
}

// handleKeyMsg applies a sender-key hand-out or answers a request, then
// retries envelopes held for a key.
func (n *Node) handleKeyMsg(c *circle.Circle, msg *envelope.Message) error {
	km, err := circle.ParseKeyMsg(msg.Body)
	if err != nil {
		n.count("dropped_malformed")
		return err
	}
	if msg.Mode != envelope.ModeDirect && km.Kind != circle.MsgSenderKey {
		// A broadcast carries only its sender's own chain key (a
		// hand-out after an add); a contribution is for the members
		// that remain after a removal, which an older epoch's
		// broadcast would also reach.
		n.count("dropped_broadcast_key_msg")
		return fmt.Errorf("node: %v key message in a broadcast envelope", km.Kind)
	}
	out, err := c.HandleKeyMsg(msg.Sender, km)
	if err != nil {
		return err
	}
	if msg.Mode == envelope.ModeBroadcast {
		n.count("key_handouts_broadcast_taken")
	}
	if err := n.saveCircle(c); err != nil {
		return err
	}
	n.sendKeyMsgs(c, out)
	n.retryHeld()
	return nil
}

// handleRosterOp applies a roster operation that member from sent. One
// whose parents have not arrived waits in the circle's state (saved below,
// so the envelope may be acked) while from is asked for them.
func (n *Node) handleRosterOp(c *circle.Circle, from peer.ID, raw []byte) error {
	before := c.Epoch()
	u, err := c.ApplyOpFrom(from, raw)
	if err != nil {
		return err
	}
	if u.Waiting {
		n.count("roster_ops_waiting")
	}
	if err := n.saveCircle(c); err != nil {
		return err
	}
	n.afterUpdate(c, u, before)
	return nil
}

// afterUpdate sends what a roster change requires: the operation itself to
// every member (sealed under the epoch they know), and key hand-outs.
func (n *Node) afterUpdate(c *circle.Circle, u *circle.Update, before circle.Epoch) {
	if u == nil {
		return
	}
	if u.Op != nil && u.Op.Author == n.ID() {
		// Our own operation: the other members need it, sealed under the
		// epoch they still know. A member just added got the log in its
		// welcome.
		var to []peer.ID
		for _, m := range c.Roster().Members() {
			if m.Peer != n.ID() && !(u.Op.Kind == circle.OpAdd && m.Peer == u.Op.Target) {
				to = append(to, m.Peer)
			}
		}
		if len(to) > 0 {
			ep := before
			if _, err := n.enqueue(c.ID(), to, envelope.KindRoster, u.Op.Raw(), 0, &ep); err != nil {
				n.log.Warn("roster op", "err", err)
			}
		}
	}
	for _, o := range u.Send {
		// What an epoch change costs in hand-outs (the scale benchmark
		// and TestJoinHandsOutOnce read these).
		if o.Roster == nil && o.Msg.Kind == circle.MsgSenderKey {
			if len(o.Broadcast) > 0 {
				n.count("key_handouts_broadcast")
			} else {
				n.count("key_handouts_direct")
			}
		}
	}
	n.sendKeyMsgs(c, u.Send)
	n.syncMembers(c, u, before)
	n.retryHeld()
	if u.EpochChanged {
		n.announcePresence()
	}
}

// sendKeyMsgs seals each key message (or roster operation) in a direct
// envelope to its member, and a sender-key hand-out for the members of an
// older epoch (Outgoing.Broadcast) in one broadcast envelope under it.
func (n *Node) sendKeyMsgs(c *circle.Circle, out []circle.Outgoing) {
	for _, o := range out {
		if len(o.Broadcast) > 0 {
			ep := o.Epoch
			if _, err := n.enqueueAs(c.ID(), false, o.Broadcast, envelope.KindSenderKey, o.Msg.Marshal(), 0, &ep); err != nil {
				n.log.Warn("sender-key hand-out", "epoch", o.Epoch, "members", len(o.Broadcast), "err", err)
			}
			continue
		}
		kind, body := envelope.KindSenderKey, o.Msg.Marshal()
		switch {
		case o.Roster != nil:
			kind, body = envelope.KindRoster, o.Roster
		case o.Msg.Kind == circle.MsgKeyRequest, o.Msg.Kind == circle.MsgOpRequest:
			kind = envelope.KindKeyQuery
		}
		var ep *circle.Epoch
		if o.Epoch != (circle.Epoch{}) {
			ep = &o.Epoch
		}
		if _, err := n.enqueue(c.ID(), []peer.ID{o.To}, kind, body, 0, ep); err != nil {
			n.log.Warn("key message", "to", o.To, "err", err)
		}
	}
}

// requestKey asks the sender of a held envelope for its chain key of the
// envelope's epoch. Only that member is asked, and not again within
// keyAskEvery: a member that lacks keys (a newcomer, or everyone after a
// join) holds many envelopes at once, and each asking every member whose
// key was missing made O(held × members) queries and as many answers,
// which at 25 members in one Dendrite room outgrew what the room could
// carry (BENCHMARKS.md, scale).
func (n *Node) requestKey(id envelope.CircleID, e circle.Epoch, from peer.ID) {
	c := keys{n}.circle(id)
	if c == nil || from == "" {
		return
	}
	n.sendKeyMsgs(c, n.unasked(c, c.KeyRequest(e, from)))
}

// keyAskEvery is how long a key request to one member for one key stands
// before it may be sent again (the answer travels like any direct
// envelope; maintainLoop asks again for what is still missing).
const keyAskEvery = 30 * time.Second

// keyAsk names one key request: circle, member, epoch or remove op.
type keyAsk struct {
	circle circle.ID
	to     peer.ID
	epoch  circle.Epoch
	op     circle.Hash
}

// unasked drops the key requests in out sent within keyAskEvery and notes
// the others as sent now; everything else passes.
func (n *Node) unasked(c *circle.Circle, out []circle.Outgoing) []circle.Outgoing {
	now := n.opts.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	for k, at := range n.keyAsked {
		if now.Sub(at) >= keyAskEvery {
			delete(n.keyAsked, k)
		}
	}
	kept := out[:0:0]
	for _, o := range out {
		if o.Roster == nil && o.Msg.Kind == circle.MsgKeyRequest {
			k := keyAsk{c.ID(), o.To, o.Msg.Epoch, o.Msg.Op}
			if _, asked := n.keyAsked[k]; asked {
				n.count("key_requests_suppressed")
				continue
			}
			n.keyAsked[k] = now
		}
		kept = append(kept, o)
	}
	return kept
}

// retryHeld feeds held envelopes to Open again; those that open are handled
// and deleted, expired ones dropped. It walks the store a page at a time, so
// however many are held, only a page is in memory.
//
// Calls are coalesced: while a walk runs, another call only asks for one
// more walk after it, so a node walks its held envelopes once at a time
// however many key messages arrive together. Each key message used to walk
// them all in its own handler: the 50 nodes of the scale benchmark had
// 4,053 walks under way at once, each with a page of envelopes decoded
// (1.5 GB of the process's heap), and the work grew with key messages ×
// held envelopes.
func (n *Node) retryHeld() { n.heldRetry.do(n.walkHeld) }

func (n *Node) walkHeld() {
	now := n.opts.Now()
	err := n.db.WalkHeld(heldPage, func(h *store.HeldEnvelope) {
		if now.After(h.Until) {
			n.db.DeleteHeld(h.Key)
			n.count("dropped_undecryptable_expired")
			return
		}
		msg, err := n.opener.Open(h.Channel, h.Raw)
		if errors.Is(err, envelope.ErrKeyNotYet) || errors.Is(err, envelope.ErrPending) {
			return
		}
		if err == nil && n.dispatch(context.Background(), msg, h.Path) != nil {
			return
		}
		n.db.DeleteHeld(h.Key)
	})
	if err != nil {
		n.log.Error("held envelopes", "err", err)
	}
}

// heldPage is how many held envelopes retryHeld has in memory at once.
const heldPage = 64

// touch notes that p was heard from.
func (n *Node) touch(p peer.ID, foundBy string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	pi := n.peerLocked(p)
	pi.lastSeen = n.opts.Now()
	if pi.foundBy == "" && foundBy != "" {
		pi.foundBy = foundBy
	}
}

// maintainLoop runs the circles' daily work (ratchets, key deletion,
// prekey rotation) and key requests.
func (n *Node) maintainLoop(ctx context.Context) {
	lastPrune := time.Time{}
	saved := map[circle.ID][32]byte{} // what the last save here wrote
	n.rotatePrekeys()                 // a node started after a long pause publishes its prekey now
	for {
		if sdk.Sleep(ctx, coalesce(time.Minute)) != nil {
			return
		}
		n.rotatePrekeys()
		n.expirePending()
		for _, c := range n.allCircles() {
			c.Maintain()
			n.sendKeyMsgs(c, n.unasked(c, c.Requests()))
			// An idle circle's state does not change from minute to
			// minute: write (and fsync) it only when it did.
			sum, err := n.circleSum(c)
			if err == nil && saved[c.ID()] == sum {
				continue
			}
			if err := n.saveCircle(c); err != nil {
				n.log.Error("save circle", "err", err)
				continue
			}
			saved[c.ID()] = sum
		}
		n.retryHeld()
		n.maintainMailbox(ctx)
		n.saveUptime(false)
		if time.Since(lastPrune) >= time.Hour {
			// Dedupe records outlive their messages only until a copy
			// would fail the timestamp check anyway.
			if _, err := n.db.PruneDedupe(); err != nil {
				n.log.Warn("prune dedupe records", "err", err)
			}
			lastPrune = time.Now()
		}
	}
}

// holdFragment keeps a fragment of sender's durably unless its message
// already completed.
func (n *Node) holdFragment(sender peer.ID, prefix, channelID, path string, raw []byte) error {
	n.fragMu.Lock()
	defer n.fragMu.Unlock()
	if _, done := n.completed[prefix]; done {
		return nil
	}
	h := &store.HeldEnvelope{Key: prefix + heldKey(raw), Channel: channelID, Path: path, Raw: raw, Until: n.opts.Now().Add(n.opts.DefaultTTL)}
	_, err := n.hold(h, fragmentSenderPrefix(sender), "fragment of an unfinished message")
	return err
}

// dropFragments deletes the held fragments of a message that completed.
func (n *Node) dropFragments(sender peer.ID, id envelope.MessageID) {
	prefix := fragmentKey(sender, id)
	n.fragMu.Lock()
	defer n.fragMu.Unlock()
	now := n.opts.Now()
	for k, at := range n.completed {
		if now.Sub(at) > time.Hour {
			delete(n.completed, k)
		}
	}
	n.completed[prefix] = now
	if _, err := n.db.DeleteHeldPrefix(prefix); err != nil {
		n.log.Warn("held fragments", "err", err)
	}
}
