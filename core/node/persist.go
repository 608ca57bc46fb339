package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/remora-p2p/remora/core/circle"
	"github.com/remora-p2p/remora/core/envelope"
	"github.com/remora-p2p/remora/core/store"
)

// OutboxEntry is a message not yet acked by all its recipients: the store's
// outbox item plus the node's route bookkeeping.
type OutboxEntry struct {
	ID       envelope.MessageID
	Circle   circle.ID
	Kind     envelope.Kind
	Direct   bool
	Pending  []peer.ID // recipients that have not acked
	Body     []byte
	Seq      envelope.Sequence
	Created  time.Time
	Expiry   time.Time
	Channels map[string]time.Time // channel name → posted at
	// Epoch, when set, seals under that older epoch (roster operations).
	Epoch circle.Epoch
	// Deposits are the copies friends keep for recipients not reached.
	Deposits []Deposit
	// woken are the recipients this entry woke up (in memory: a restart
	// may wake once more).
	woken []peer.ID
	// posting are the channels e is being published to now (in memory:
	// after a restart it is posted again).
	posting map[string]bool
}

// routeState is the part of an entry the store keeps opaque.
type routeState struct {
	Direct      bool                 `json:"direct,omitempty"`
	Incarnation uint64               `json:"inc"`
	Number      uint64               `json:"num"`
	Epoch       circle.Epoch         `json:"epoch,omitzero"`
	Channels    map[string]time.Time `json:"channels,omitempty"`
	Deposits    []Deposit            `json:"deposits,omitempty"`
}

func (e *OutboxEntry) item() (*store.OutboxItem, error) {
	st, err := json.Marshal(routeState{Direct: e.Direct, Incarnation: e.Seq.Incarnation, Number: e.Seq.Number, Epoch: e.Epoch, Channels: e.Channels, Deposits: e.Deposits})
	if err != nil {
		return nil, err
	}
	it := &store.OutboxItem{ID: e.ID, Circle: e.Circle, Kind: uint16(e.Kind), Body: e.Body, Created: e.Created, Expires: e.Expiry, State: st}
	for _, p := range e.Pending {
		it.To = append(it.To, p.String())
	}
	return it, nil
}

func entryOf(it store.OutboxItem) (*OutboxEntry, error) {
	var st routeState
	if err := json.Unmarshal(it.State, &st); err != nil {
		return nil, fmt.Errorf("outbox item %x: route state: %w", it.ID, err)
	}
	e := &OutboxEntry{ID: it.ID, Circle: it.Circle, Kind: envelope.Kind(it.Kind), Direct: st.Direct, Body: it.Body,
		Seq: envelope.Sequence{Incarnation: st.Incarnation, Number: st.Number}, Created: it.Created, Expiry: it.Expires,
		Channels: st.Channels, Epoch: st.Epoch, Deposits: st.Deposits}
	if e.Channels == nil {
		e.Channels = map[string]time.Time{}
	}
	for _, s := range it.To {
		p, err := peer.Decode(s)
		if err != nil {
			return nil, fmt.Errorf("outbox item %x: recipient: %w", it.ID, err)
		}
		e.Pending = append(e.Pending, p)
	}
	return e, nil
}

// putOutbox stores a new entry durably.
func (n *Node) putOutbox(e *OutboxEntry) error {
	it, err := e.item()
	if err != nil {
		return err
	}
	return n.db.OutboxPut(it)
}

// updateOutbox rewrites an entry (acks, channels posted to).
func (n *Node) updateOutbox(e *OutboxEntry) error {
	it, err := n.snapshot(e).item()
	if err != nil {
		return err
	}
	err = n.db.OutboxUpdate(it)
	if errors.Is(err, store.ErrNotFound) {
		return nil // acked by everyone meanwhile
	}
	return err
}

func (n *Node) loadOutbox() error {
	items, err := n.db.Outbox()
	if err != nil {
		return fmt.Errorf("node: load outbox: %w", err)
	}
	for _, it := range items {
		e, err := entryOf(it)
		if err != nil {
			n.log.Error("outbox item unreadable; dropped", "err", err)
			continue
		}
		n.outbox[e.ID] = e
	}
	return nil
}

func (n *Node) loadCircles() error {
	ids, err := n.db.Circles()
	if err != nil {
		return fmt.Errorf("node: load circles: %w", err)
	}
	for _, id := range ids {
		ops, state, err := n.db.LoadCircle(id)
		if err != nil {
			return fmt.Errorf("node: load circle %x: %w", id, err)
		}
		c, err := circle.Load(n.opts.Keyring, ops, state, n.circleOptions())
		if err != nil {
			return fmt.Errorf("node: load circle %x: %w", id, err)
		}
		n.addCircle(c)
	}
	return nil
}

func (n *Node) nextSeq(counter string) (envelope.Sequence, error) {
	s, err := n.db.NextSeq(counter)
	return envelope.Sequence{Incarnation: s.Incarnation, Number: s.Number}, err
}

// snapshot copies e under n.mu, which guards its changing fields (Pending,
// Channels, Deposits), for reading outside it: persisting, sealing.
func (n *Node) snapshot(e *OutboxEntry) *OutboxEntry {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := *e
	c.Pending = slices.Clone(e.Pending)
	c.Deposits = slices.Clone(e.Deposits) // releaseDeposits filters them in place
	c.woken, c.posting = nil, nil
	c.Channels = make(map[string]time.Time, len(e.Channels))
	for k, v := range e.Channels {
		c.Channels[k] = v
	}
	return &c
}
