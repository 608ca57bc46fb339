package mailbox

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Refusals a holder answers a deposit with; they cross the live path as the
// NACK's reason and come back as these errors through [Refusal].
var (
	// ErrOff: this device offers no mailbox.
	ErrOff = errors.New("mailbox off")
	// ErrFull: the quota is spent; the sender tries another friend.
	ErrFull = errors.New("mailbox full")
)

// Refusal maps a NACK reason back to ErrOff or ErrFull (nil if neither).
func Refusal(reason string) error {
	for _, e := range []error{ErrFull, ErrOff} {
		if strings.Contains(reason, e.Error()) {
			return e
		}
	}
	return nil
}

// Backend stores records durably (core/store's Mailbox).
type Backend interface {
	Load(ctx context.Context, fn func(key, value []byte) error) error
	Get(key []byte) ([]byte, error)
	Put(key, value []byte) error
	Delete(keys ...[]byte) error
}

// Options configure a Box.
type Options struct {
	// Quota is the bytes of envelopes kept for others; 0 offers no mailbox.
	Quota int64
	// Expiry is the longest an envelope is kept, whatever its sender asked
	// (default 7 days).
	Expiry  time.Duration
	Backend Backend
	Now     func() time.Time
}

// Item is one envelope held for another member.
type Item struct {
	ID     ID
	Tag    Tag
	From   peer.ID // who deposited it
	Size   int
	At     time.Time
	Expiry time.Time
}

// Box keeps envelopes for other members, opaque, within a byte quota. It is
// safe for concurrent use.
type Box struct {
	opts Options

	mu      sync.Mutex
	items   map[ID]*Item
	storing map[ID]bool // being written: counted in bytes, not yet in items
	bytes   int64
}

// Record keys in the backend.
const (
	prefixItem = 'i' // 'i' ‖ ID → tag ‖ expiry ‖ at ‖ u8 len ‖ from ‖ envelope
	prefixWake = 'w' // 'w' ‖ peer ID → registration JSON
)

// Open loads what the backend holds.
func Open(ctx context.Context, opts Options) (*Box, error) {
	if opts.Expiry <= 0 {
		opts.Expiry = 7 * 24 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	b := &Box{opts: opts, items: map[ID]*Item{}, storing: map[ID]bool{}}
	if opts.Backend == nil {
		return nil, errors.New("mailbox: open: no backend")
	}
	err := opts.Backend.Load(ctx, func(k, v []byte) error {
		if len(k) != 17 || k[0] != prefixItem {
			return nil
		}
		it, _, err := decodeItem(v)
		if err != nil {
			return nil // a damaged record is dropped at the next expiry sweep
		}
		copy(it.ID[:], k[1:])
		b.items[it.ID] = it
		b.bytes += int64(it.Size)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mailbox: open: %w", err)
	}
	return b, nil
}

// Offered reports whether this device keeps envelopes for others.
func (b *Box) Offered() bool { return b.opts.Quota > 0 }

func itemKey(id ID) []byte { return append([]byte{prefixItem}, id[:]...) }

func encodeItem(it *Item, env []byte) []byte {
	v := make([]byte, 0, 16+16+1+len(it.From)+len(env))
	v = append(v, it.Tag[:]...)
	v = binary.BigEndian.AppendUint64(v, uint64(it.Expiry.UnixMilli()))
	v = binary.BigEndian.AppendUint64(v, uint64(it.At.UnixMilli()))
	v = append(v, byte(len(it.From)))
	v = append(v, it.From...)
	return append(v, env...)
}

func decodeItem(v []byte) (*Item, []byte, error) {
	if len(v) < 33 || len(v) < 33+int(v[32]) {
		return nil, nil, ErrMalformed
	}
	it := &Item{}
	copy(it.Tag[:], v)
	it.Expiry = time.UnixMilli(int64(binary.BigEndian.Uint64(v[16:])))
	it.At = time.UnixMilli(int64(binary.BigEndian.Uint64(v[24:])))
	n := int(v[32])
	it.From = peer.ID(v[33 : 33+n])
	env := v[33+n:]
	it.Size = len(env)
	return it, env, nil
}

// Put keeps env for the member tag names, deposited by from. A copy
// already held is not stored twice. Errors: ErrOff, ErrFull, or a store
// failure.
func (b *Box) Put(from peer.ID, tag Tag, expiry time.Time, env []byte) (ID, error) {
	id := IDOf(env)
	if !b.Offered() {
		return id, ErrOff
	}
	now := b.opts.Now()
	if limit := now.Add(b.opts.Expiry); expiry.After(limit) {
		expiry = limit
	}
	if !expiry.After(now) {
		return id, fmt.Errorf("mailbox: envelope already expired at %s", expiry.UTC().Format(time.RFC3339))
	}
	it := &Item{ID: id, Tag: tag, From: from, Size: len(env), At: now, Expiry: expiry}
	b.mu.Lock()
	if _, ok := b.items[id]; ok || b.storing[id] {
		b.mu.Unlock()
		return id, nil
	}
	if used := b.bytes; used+int64(len(env)) > b.opts.Quota {
		b.mu.Unlock()
		return id, fmt.Errorf("%w: %d of %d bytes in use", ErrFull, used, b.opts.Quota)
	}
	// The bytes are taken before the write and the write made outside the
	// lock, so that deposits in flight together share the backend's
	// transaction and fsync (core/store: bbolt Batch) instead of waiting
	// for each other's.
	b.bytes += int64(it.Size)
	b.storing[id] = true
	b.mu.Unlock()
	err := b.opts.Backend.Put(itemKey(id), encodeItem(it, env))
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.storing, id)
	if err != nil {
		b.bytes -= int64(it.Size)
		return id, fmt.Errorf("mailbox: keep envelope: %w", err)
	}
	b.items[id] = it
	return id, nil
}

// For lists what is held for any of tags, oldest first; nothing past its
// expiry.
func (b *Box) For(tags []Tag) []Item {
	now := b.opts.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []Item
	for _, it := range b.items {
		if slices.Contains(tags, it.Tag) && !now.After(it.Expiry) {
			out = append(out, *it)
		}
	}
	slices.SortFunc(out, func(x, y Item) int { return x.At.Compare(y.At) })
	return out
}

// Envelope returns the bytes of a held item.
func (b *Box) Envelope(id ID) ([]byte, error) {
	v, err := b.opts.Backend.Get(itemKey(id))
	if err != nil {
		return nil, fmt.Errorf("mailbox: read envelope %s: %w", id, err)
	}
	_, env, err := decodeItem(v)
	return env, err
}

// Release drops the items named that by may release: those held for one of
// its tags (the recipient) or deposited by it (the sender, once the
// recipient acked). It returns how many went.
func (b *Box) Release(by peer.ID, tags []Tag, ids []ID) (int, error) {
	b.mu.Lock()
	var gone []ID
	for _, id := range ids {
		it, ok := b.items[id]
		if ok && (it.From == by || slices.Contains(tags, it.Tag)) {
			gone = append(gone, id)
		}
	}
	b.mu.Unlock()
	return len(gone), b.drop(gone)
}

// DropFrom drops everything from deposited (a removed member: its
// envelopes would be refused by their recipients anyway).
func (b *Box) DropFrom(from peer.ID) (int, error) {
	b.mu.Lock()
	var gone []ID
	for id, it := range b.items {
		if it.From == from {
			gone = append(gone, id)
		}
	}
	b.mu.Unlock()
	return len(gone), b.drop(gone)
}

// Expire drops the items past their expiry and returns how many went.
func (b *Box) Expire() (int, error) {
	now := b.opts.Now()
	b.mu.Lock()
	var gone []ID
	for id, it := range b.items {
		if now.After(it.Expiry) {
			gone = append(gone, id)
		}
	}
	b.mu.Unlock()
	return len(gone), b.drop(gone)
}

func (b *Box) drop(ids []ID) error {
	if len(ids) == 0 {
		return nil
	}
	keys := make([][]byte, len(ids))
	for i, id := range ids {
		keys[i] = itemKey(id)
	}
	if err := b.opts.Backend.Delete(keys...); err != nil {
		return fmt.Errorf("mailbox: release: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, id := range ids {
		if it, ok := b.items[id]; ok {
			b.bytes -= int64(it.Size)
			delete(b.items, id)
		}
	}
	return nil
}

// Stats is what a Box holds for others.
type Stats struct {
	Offered    bool
	Quota      int64
	Expiry     time.Duration
	Items      int
	Bytes      int64
	Recipients int // distinct tags
}

// Stats reports what is held.
func (b *Box) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	tags := map[Tag]bool{}
	for _, it := range b.items {
		tags[it.Tag] = true
	}
	return Stats{Offered: b.Offered(), Quota: b.opts.Quota, Expiry: b.opts.Expiry, Items: len(b.items), Bytes: b.bytes, Recipients: len(tags)}
}
