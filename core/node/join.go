package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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

	// Join parts come from anyone who can post to a channel, before any
	// signature: their memory is bounded in bytes. A part carries at most
	// maxPartBytes (splitFrame cuts no larger, whatever the channel
	// takes); one source (a channel's posting account, or the channel
	// where the service names none) holds at most maxSourceBytes of
	// unfinished frames — a welcome of a circle with a long roster log
	// fits — and all sources together maxPartsBytes.
	maxPartBytes   = 16 << 10
	maxSourceBytes = 256 << 10
	maxPartsBytes  = 1 << 20
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
	source string
	first  time.Time
	parts  [][]byte
	have   int
	bytes  int
}

// Why joinParts.add did not keep a part (besides duplicates and malformed
// ones, which are ignored).
const (
	partTooLarge = "dropped_join_part_too_large" // the part alone is over maxPartBytes
	partsEvicted = "dropped_join_parts_quota"    // older unfinished frames made room for it
)

// add stores one part from source; it returns the whole frame when this
// part completed it, and why it refused the part or dropped older ones
// ("" for neither).
func (j *joinParts) add(raw []byte, source string, now time.Time) (whole []byte, dropped string) {
	if len(raw) <= partHeader {
		return nil, ""
	}
	var id [8]byte
	copy(id[:], raw[2:10])
	idx, count := int(raw[10]), int(raw[11])
	if count < 2 || count > maxParts || idx >= count {
		return nil, ""
	}
	size := len(raw) - partHeader
	if size > maxPartBytes {
		return nil, partTooLarge
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
	if p != nil && (p.source != source || len(p.parts) != count || p.parts[idx] != nil) {
		return nil, "" // a part of another source's frame, or a duplicate
	}
	// Anyone who can post to a channel can send parts; refusing new parts
	// when full would let junk block every join for partsTTL. Evicting
	// the oldest unfinished frames — the source's own first, when it is
	// the one over its share — makes an attacker outpace a real join,
	// which completes in seconds.
	for j.held(source)+size > maxSourceBytes && j.evictOldest(source, id) {
		dropped = partsEvicted
	}
	for (j.held("")+size > maxPartsBytes || p == nil && len(j.pending) >= maxPending) && j.evictOldest("", id) {
		dropped = partsEvicted
	}
	if j.held(source)+size > maxSourceBytes || j.held("")+size > maxPartsBytes {
		return nil, partsEvicted // this frame alone is over the bound
	}
	if p == nil {
		p = &partial{source: source, first: now, parts: make([][]byte, count)}
		j.pending[id] = p
	}
	p.parts[idx] = bytes.Clone(raw[partHeader:])
	p.have++
	p.bytes += size
	if p.have < count {
		return nil, dropped
	}
	delete(j.pending, id)
	return bytes.Join(p.parts, nil), dropped
}

// held is the bytes of the pending frames of source (of all, if source is
// empty): a sum over at most maxPending frames, counted when needed.
func (j *joinParts) held(source string) int {
	n := 0
	for _, p := range j.pending {
		if source == "" || p.source == source {
			n += p.bytes
		}
	}
	return n
}

// evictOldest drops the oldest pending frame (of source, unless source is
// empty) other than keep, and says whether there was one.
func (j *joinParts) evictOldest(source string, keep [8]byte) bool {
	var oldest [8]byte
	var first time.Time
	for k, p := range j.pending {
		if k == keep || source != "" && p.source != source {
			continue
		}
		if first.IsZero() || p.first.Before(first) {
			oldest, first = k, p.first
		}
	}
	if first.IsZero() {
		return false
	}
	delete(j.pending, oldest)
	return true
}

// splitFrame splits a join frame into parts of at most max bytes each
// (none if it fits), and never larger than receivers keep.
func splitFrame(frame []byte, max int) ([][]byte, error) {
	if len(frame) <= max {
		return [][]byte{frame}, nil
	}
	chunk := min(max, partHeader+maxPartBytes) - partHeader
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
// joiner will rendezvous on (default: this node's first channel). Unless
// inPerson, an admin must approve the request it brings.
func (n *Node) NewInvite(id circle.ID, hint string, ttl time.Duration, inPerson bool) (circle.Invite, error) {
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
	inv, err := c.Invite(circle.InviteOptions{Hint: hint, TTL: ttl, InPerson: inPerson})
	if err != nil {
		return circle.Invite{}, err
	}
	if err := n.saveCircle(c); err != nil {
		return circle.Invite{}, err
	}
	return inv, nil
}

// handleJoinFrame opens a join request (as inviter) or a welcome or refusal
// (as joiner).
func (n *Node) handleJoinFrame(ctx context.Context, channelID, source string, raw []byte) error {
	if raw[1] == framePart {
		whole, dropped := n.joinParts.add(raw, source, n.opts.Now())
		if dropped != "" {
			n.count(dropped)
			if _, logged := n.quotaLogged.LoadOrStore(dropped, true); !logged { // once per reason: sources are the attacker's to choose
				n.log.Warn("join parts: unfinished join frames over their bound; dropping (counted as "+dropped+")",
					"source", source, "part_bytes", len(raw)-partHeader, "max_part_bytes", maxPartBytes,
					"max_source_bytes", maxSourceBytes, "max_bytes", maxPartsBytes)
			}
		}
		if whole == nil || !isJoinFrame(whole) || whole[1] == framePart {
			return nil
		}
		raw = whole
	}
	blob := raw[2:]
	switch raw[1] {
	case frameJoin:
		return n.receiveJoinRequest(channelID, blob)
	case frameRefused:
		if len(blob) >= 8 {
			n.joinRefused(blob[8:])
		}
	case frameWelcome:
		if !n.joinWelcomed(blob) {
			n.count("ignored_welcome")
		}
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
