package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/remora-p2p/remora/core/circle"
	"github.com/remora-p2p/remora/core/delivery"
)

// Join frame types (see the package documentation).
const (
	frameVersion = 1
	frameJoin    = 0x10
	frameWelcome = 0x11
	// framePart carries one part of a join frame too large for the channel
	// (a welcome holds the roster log: ~1 KB armored, over Mastodon's 500
	// characters): version ‖ 0x12 ‖ frame ID (8) ‖ index (1) ‖ count (1) ‖ bytes.
	framePart = 0x12
	// frameRefused answers a join whose invite was used or expired: a
	// random nonce (8) ‖ the blob from circle.Refuse, MACed with the invite
	// token.
	frameRefused = 0x13

	partHeader = 2 + 8 + 1 + 1
	maxParts   = 64
	maxPending = 32
	partsTTL   = time.Hour
)

func isJoinFrame(raw []byte) bool {
	return len(raw) > 2 && raw[0] == frameVersion && raw[1] >= frameJoin && raw[1] <= frameRefused
}

// joinParts reassembles split join frames, within fixed bounds.
type joinParts struct {
	mu      sync.Mutex
	pending map[[8]byte]*partial
}

type partial struct {
	first time.Time
	parts [][]byte
	have  int
}

// add stores one part; it returns the whole frame when this part completed it.
func (j *joinParts) add(raw []byte, now time.Time) []byte {
	if len(raw) <= partHeader {
		return nil
	}
	var id [8]byte
	copy(id[:], raw[2:10])
	idx, count := int(raw[10]), int(raw[11])
	if count < 2 || count > maxParts || idx >= count {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.pending == nil {
		j.pending = map[[8]byte]*partial{}
	}
	for k, p := range j.pending {
		if now.Sub(p.first) > partsTTL {
			delete(j.pending, k)
		}
	}
	p := j.pending[id]
	if p == nil {
		if len(j.pending) >= maxPending {
			// Anyone who can post to a channel can send parts; refusing
			// new frames when full would let 32 junk parts block every
			// join for partsTTL. Evicting the oldest makes an attacker
			// outpace a real join, which completes in seconds.
			j.evictOldest()
		}
		p = &partial{first: now, parts: make([][]byte, count)}
		j.pending[id] = p
	}
	if len(p.parts) != count || p.parts[idx] != nil {
		return nil
	}
	p.parts[idx] = bytes.Clone(raw[partHeader:])
	p.have++
	if p.have < count {
		return nil
	}
	delete(j.pending, id)
	return bytes.Join(p.parts, nil)
}

func (j *joinParts) evictOldest() {
	var oldest [8]byte
	var first time.Time
	for k, p := range j.pending {
		if first.IsZero() || p.first.Before(first) {
			oldest, first = k, p.first
		}
	}
	delete(j.pending, oldest)
}

// splitFrame splits a join frame into parts of at most max bytes each
// (none if it fits).
func splitFrame(frame []byte, max int) ([][]byte, error) {
	if len(frame) <= max {
		return [][]byte{frame}, nil
	}
	chunk := max - partHeader
	if chunk < 16 {
		return nil, fmt.Errorf("node: channel too small for a join frame part (%d bytes)", max)
	}
	count := (len(frame) + chunk - 1) / chunk
	if count > maxParts {
		return nil, fmt.Errorf("node: join frame of %d bytes needs %d parts, at most %d", len(frame), count, maxParts)
	}
	var id [8]byte
	if _, err := randRead(id[:]); err != nil {
		return nil, err
	}
	var out [][]byte
	for i := 0; i < count; i++ {
		part := append([]byte{frameVersion, framePart}, id[:]...)
		part = append(part, byte(i), byte(count))
		out = append(out, append(part, frame[i*chunk:min(len(frame), (i+1)*chunk)]...))
	}
	return out, nil
}

// pendingJoin is a join this node requested and waits to be welcomed into.
type pendingJoin struct {
	p       *circle.PendingJoin
	done    chan *circle.Circle
	refused chan error
}

// NewCircle makes a new circle with this device as its admin.
func (n *Node) NewCircle(name string) (*circle.Circle, error) {
	c, _, err := circle.Create(n.opts.Keyring, name, n.opts.Name, false, n.circleOptions())
	if err != nil {
		return nil, fmt.Errorf("node: create circle: %w", err)
	}
	if err := n.saveCircle(c); err != nil {
		return nil, err
	}
	n.addCircle(c)
	n.log.Info("circle created", "circle", c.ID(), "name", name)
	return c, nil
}

// NewInvite makes a single-use invite to a circle. hint names the channel ID the
// joiner will rendezvous on (default: this node's first channel).
func (n *Node) NewInvite(id circle.ID, hint string, ttl time.Duration) (circle.Invite, error) {
	c, ok := n.circleOf(id)
	if !ok {
		return circle.Invite{}, fmt.Errorf("%w %s", ErrUnknownCircle, id)
	}
	if hint == "" {
		if len(n.channels) == 0 {
			return circle.Invite{}, errors.New("node: invite: no channel to rendezvous on; add one first (remora channel add)")
		}
		hint = n.channels[0].ID
	}
	if ttl <= 0 {
		ttl = circle.MaxInviteTTL
	}
	inv, err := c.NewInvite(hint, ttl)
	if err != nil {
		return circle.Invite{}, err
	}
	if err := n.saveCircle(c); err != nil {
		return circle.Invite{}, err
	}
	return inv, nil
}

// ErrNoRendezvous means the joiner has no channel the invite names.
var ErrNoRendezvous = errors.New("node: join: no configured channel matches the invite's rendezvous hint")

// JoinCircle asks to join the circle of an invite over the channel its hint names
// and waits (until ctx ends) for the inviter's welcome.
func (n *Node) JoinCircle(ctx context.Context, text string) (*circle.Circle, string, error) {
	inv, err := circle.ParseInvite(strings.TrimSpace(text))
	if err != nil {
		return nil, "", err
	}
	req, pj, err := circle.RequestJoin(n.opts.Keyring, inv, n.opts.Name, n.opts.Now())
	if err != nil {
		return nil, "", err
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
		return nil, "", fmt.Errorf("%w %q (configured: %s): add that channel first with `remora channel add`", ErrNoRendezvous, inv.Hint, strings.Join(ids, ", "))
	}
	wait := &pendingJoin{p: pj, done: make(chan *circle.Circle, 1), refused: make(chan error, 1)}
	key := inv.Token.ID().String()
	n.mu.Lock()
	n.joins[key] = wait
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.joins, key)
		n.mu.Unlock()
	}()
	parts, err := splitFrame(append([]byte{frameVersion, frameJoin}, req...), ch.maxEnv)
	if err != nil {
		return nil, "", err
	}
	ch.publish(parts, delivery.PriorityControl, "", nil)
	n.log.Info("join requested; waiting for the inviter's welcome", "channel", ch.Name, "fingerprint", pj.Fingerprint())
	select {
	case c := <-wait.done:
		return c, pj.Fingerprint(), nil
	case err := <-wait.refused:
		return nil, pj.Fingerprint(), fmt.Errorf("node: join refused by the inviter: %w", err)
	case <-ctx.Done():
		return nil, pj.Fingerprint(), fmt.Errorf("node: join: no welcome yet (%w); the inviter's daemon must be running and reading %s", ctx.Err(), ch.Name)
	}
}

// handleJoinFrame opens a join request (as inviter) or a welcome (as joiner).
func (n *Node) handleJoinFrame(ctx context.Context, channelID string, raw []byte) error {
	if raw[1] == framePart {
		whole := n.joinParts.add(raw, n.opts.Now())
		if whole == nil || !isJoinFrame(whole) || whole[1] == framePart {
			return nil
		}
		raw = whole
	}
	blob := raw[2:]
	switch raw[1] {
	case frameJoin:
		for _, c := range n.allCircles() {
			req, err := c.OpenJoin(blob)
			if errors.Is(err, circle.ErrInviteUsed) || errors.Is(err, circle.ErrInviteExpired) {
				// Authentic, but the invite cannot admit this device: say so,
				// so the joiner gets an error instead of silence.
				if refusal, rerr := circle.Refuse(req, err); rerr == nil {
					// A fresh nonce makes each answer a new item: channels
					// with strong idempotency would drop a repeated one.
					nonce := make([]byte, 8)
					randRead(nonce)
					n.publishFrame(channelID, frameRefused, append(nonce, refusal...))
				}
				n.event("join_refused", c.ID().String(), "a join request was refused: %v", err)
				return nil
			}
			if err != nil {
				continue
			}
			before := c.Epoch()
			welcome, u, err := c.Welcome(req)
			if err != nil {
				n.log.Warn("join request refused", "err", err)
				n.event("join_refused", c.ID().String(), "a join request was refused: %v", err)
				return nil
			}
			if err := n.saveCircle(c); err != nil {
				return &storeError{err}
			}
			n.publishFrame(channelID, frameWelcome, welcome)
			fp := req.Fingerprint(n.ID(), n.opts.Keyring.Current().Public)
			n.log.Info("member joined", "circle", c.ID(), "member", req.Name, "fingerprint", fp)
			n.event("member_joined", c.ID().String(), "%s joined; compare fingerprint %s with them", req.Name, fp)
			n.afterUpdate(c, u, before)
			n.announcePresence()
			return nil
		}
		n.count("ignored_join_request")
	case frameRefused:
		n.mu.Lock()
		for _, j := range n.joins {
			if len(blob) < 8 {
				break
			}
			if err := j.p.Refused(blob[8:]); err != nil {
				select {
				case j.refused <- err:
				default:
				}
			}
		}
		n.mu.Unlock()
	case frameWelcome:
		n.mu.Lock()
		var pending []*pendingJoin
		for _, j := range n.joins {
			pending = append(pending, j)
		}
		n.mu.Unlock()
		for _, j := range pending {
			c, u, err := circle.Join(n.opts.Keyring, j.p, blob, n.circleOptions())
			if err != nil {
				continue
			}
			if err := n.saveCircle(c); err != nil {
				return &storeError{err}
			}
			n.addCircle(c)
			n.afterUpdate(c, u, c.Epoch())
			n.announcePresence()
			n.log.Info("joined circle", "circle", c.ID())
			j.done <- c
			n.poke()
			return nil
		}
		n.count("ignored_welcome")
	}
	return nil
}

// publishFrame posts a join frame on the channel with the given ID.
func (n *Node) publishFrame(channelID string, typ byte, blob []byte) {
	for _, ch := range n.channels {
		if ch.ID == channelID {
			parts, err := splitFrame(append([]byte{frameVersion, typ}, blob...), ch.maxEnv)
			if err != nil {
				n.log.Warn("join frame", "channel", ch.Name, "err", err)
				return
			}
			ch.publish(parts, delivery.PriorityControl, "", nil)
			return
		}
	}
}
