package store

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Buckets of this file, created on first use so the list in store.go stays
// the core set.
var (
	bHeld = []byte("held") // key → HeldEnvelope JSON
	bSeqs = []byte("seqs") // "c/"+counter name → last number (8); "incarnation" → incarnation (8)

	kIncarnation = []byte("incarnation")
	kHeldBytes   = []byte("held-bytes") // in bMeta: bytes of all held envelopes (8)
)

// HeldEnvelope is an envelope that cannot be opened yet because its sender's
// key has not arrived; it is retried when keys arrive, until Until.
type HeldEnvelope struct {
	Key     string    `json:"key"`
	Channel string    `json:"channel"` // the channel ID it was sealed for
	Path    string    `json:"path"`
	Raw     []byte    `json:"raw"`
	Until   time.Time `json:"until"`
}

// HeldQuota bounds what PutHeldWithin may add: the items and bytes under
// Prefix (one sender's envelopes of one kind), and the bytes of every held
// envelope together. Zero fields do not limit.
type HeldQuota struct {
	Prefix     string
	MaxItems   int
	MaxBytes   int64
	TotalBytes int64
}

// ErrHeldQuota means PutHeldWithin refused an envelope: its sender's items
// or bytes, or all held bytes, would pass the quota.
var ErrHeldQuota = errors.New("store: held envelope quota reached")

// HeldQuotaError says which bound of a HeldQuota was hit.
type HeldQuotaError struct {
	// Total is true when all held bytes, not the sender's, hit the bound.
	Total bool
	// Items and Bytes held before the refused one (under Prefix, or all).
	Items int
	Bytes int64
}

func (e *HeldQuotaError) Error() string {
	if e.Total {
		return fmt.Sprintf("%v: %d bytes held in all", ErrHeldQuota, e.Bytes)
	}
	return fmt.Sprintf("%v: %d items, %d bytes held for this sender", ErrHeldQuota, e.Items, e.Bytes)
}

func (e *HeldQuotaError) Unwrap() error { return ErrHeldQuota }

// PutHeld keeps an envelope until it can be opened or expires.
func (d *DB) PutHeld(h *HeldEnvelope) error {
	return d.PutHeldWithin(h, HeldQuota{})
}

// PutHeldWithin keeps an envelope unless it would take the held envelopes
// past q (a *HeldQuotaError, matching ErrHeldQuota). Counting and storing
// are one transaction, so concurrent receivers cannot overshoot. Replacing
// an envelope under the same key counts only the difference.
func (d *DB) PutHeldWithin(h *HeldEnvelope, q HeldQuota) error {
	v, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("store: hold envelope: %w", err)
	}
	key := []byte(h.Key)
	err = d.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bHeld)
		if err != nil {
			return err
		}
		total, err := heldTotal(tx, b)
		if err != nil {
			return err
		}
		size := heldSize(key, v)
		var old int64
		if prev := b.Get(key); prev != nil {
			old = heldSize(key, prev)
		}
		if q.TotalBytes > 0 && total-old+size > q.TotalBytes {
			return &HeldQuotaError{Total: true, Bytes: total}
		}
		if q.MaxItems > 0 || q.MaxBytes > 0 {
			items, bytes := prefixUsage(b, []byte(q.Prefix))
			if old == 0 && q.MaxItems > 0 && items >= q.MaxItems || q.MaxBytes > 0 && bytes-old+size > q.MaxBytes {
				return &HeldQuotaError{Items: items, Bytes: bytes}
			}
		}
		if err := b.Put(key, v); err != nil {
			return err
		}
		return setHeldTotal(tx, total-old+size)
	})
	if err != nil {
		return fmt.Errorf("store: hold envelope: %w", err)
	}
	return nil
}

// heldSize is what one held envelope costs on disk: key and record.
func heldSize(k, v []byte) int64 { return int64(len(k) + len(v)) }

// prefixUsage counts the items and bytes held under prefix.
func prefixUsage(b *bolt.Bucket, prefix []byte) (items int, bytes int64) {
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = c.Next() {
		items++
		bytes += heldSize(k, v)
	}
	return items, bytes
}

func hasPrefix(k, prefix []byte) bool { return bytes.HasPrefix(k, prefix) }

// heldTotal returns the bytes of all held envelopes, kept beside them in
// bMeta; a store from before that total is counted once, here.
func heldTotal(tx *bolt.Tx, b *bolt.Bucket) (int64, error) {
	if v := tx.Bucket(bMeta).Get(kHeldBytes); v != nil {
		return int64(getU64(v)), nil
	}
	var total int64
	err := b.ForEach(func(k, v []byte) error {
		total += heldSize(k, v)
		return nil
	})
	return total, err
}

func setHeldTotal(tx *bolt.Tx, total int64) error {
	return tx.Bucket(bMeta).Put(kHeldBytes, u64(uint64(max(total, 0))))
}

// HeldUsage returns the items and bytes held under prefix ("" for all).
func (d *DB) HeldUsage(prefix string) (items int, bytes int64, err error) {
	err = d.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bHeld); b != nil {
			items, bytes = prefixUsage(b, []byte(prefix))
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("store: held usage: %w", err)
	}
	return items, bytes, nil
}

// WalkHeld calls fn for every held envelope, in key order, reading them
// page envelopes at a time (64 if page <= 0): each page is read in its own
// transaction and handed to fn outside it, so that neither all of them sit
// in memory at once nor a long read blocks the writes fn makes (fn may
// delete the envelope it is given).
func (d *DB) WalkHeld(page int, fn func(*HeldEnvelope)) error {
	if page <= 0 {
		page = 64
	}
	after := ""
	for {
		hs, err := d.heldPage(after, page)
		if err != nil {
			return err
		}
		for _, h := range hs {
			fn(h)
		}
		if len(hs) < page {
			return nil
		}
		after = hs[len(hs)-1].Key
	}
}

// heldPage returns up to limit held envelopes whose keys sort after after
// ("" for the first page), in key order.
func (d *DB) heldPage(after string, limit int) ([]*HeldEnvelope, error) {
	var out []*HeldEnvelope
	err := d.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bHeld)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		k, v := c.Seek([]byte(after))
		if k != nil && after != "" && string(k) == after {
			k, v = c.Next()
		}
		for ; k != nil && len(out) < limit; k, v = c.Next() {
			h := &HeldEnvelope{}
			if err := json.Unmarshal(v, h); err != nil {
				return fmt.Errorf("%q: %w", k, err)
			}
			out = append(out, h)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: held envelopes: %w", err)
	}
	return out, nil
}

// Held returns every held envelope at once. For tests and small stores:
// the node walks them with WalkHeld.
func (d *DB) Held() ([]*HeldEnvelope, error) {
	var out []*HeldEnvelope
	err := d.WalkHeld(256, func(h *HeldEnvelope) { out = append(out, h) })
	return out, err
}

// CountHeld counts the held envelopes whose key starts with prefix.
func (d *DB) CountHeld(prefix string) (int, error) {
	n, _, err := d.HeldUsage(prefix)
	return n, err
}

// DeleteHeld drops a held envelope.
func (d *DB) DeleteHeld(key string) error {
	_, err := d.deleteHeld([]byte(key), true)
	return err
}

// DeleteHeldPrefix drops every held envelope whose key starts with prefix
// and returns how many.
func (d *DB) DeleteHeldPrefix(prefix string) (int, error) {
	if prefix == "" {
		return 0, errors.New("store: delete held envelopes: empty prefix")
	}
	return d.deleteHeld([]byte(prefix), false)
}

func (d *DB) deleteHeld(key []byte, exact bool) (int, error) {
	n := 0
	err := d.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bHeld)
		if b == nil {
			return nil
		}
		total, err := heldTotal(tx, b)
		if err != nil {
			return err
		}
		c := b.Cursor()
		for k, v := c.Seek(key); k != nil && (exact && string(k) == string(key) || !exact && hasPrefix(k, key)); k, v = c.Seek(key) {
			total -= heldSize(k, v)
			if err := c.Delete(); err != nil {
				return err
			}
			n++
			if exact {
				break
			}
		}
		return setHeldTotal(tx, total)
	})
	if err != nil {
		return 0, fmt.Errorf("store: delete held envelopes: %w", err)
	}
	return n, nil
}

// Sequence is a sender's counter value and the store's incarnation: a random
// number drawn when the store was created, so a restarted counter (a new
// install, a restore) is recognisable as such by receivers.
type Sequence struct {
	Incarnation uint64
	Number      uint64
}

// NextSeq returns the next number of a named counter (per circle, or per
// circle and recipient), starting at 1, with the store's incarnation.
func (d *DB) NextSeq(counter string) (Sequence, error) {
	var s Sequence
	err := d.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bSeqs)
		if err != nil {
			return err
		}
		inc := b.Get(kIncarnation)
		if inc == nil {
			var r [8]byte
			if _, err := rand.Read(r[:]); err != nil {
				return err
			}
			inc = r[:]
			if err := b.Put(kIncarnation, inc); err != nil {
				return err
			}
		}
		s.Incarnation = binary.BigEndian.Uint64(inc)
		k := []byte("c/" + counter)
		s.Number = getU64(b.Get(k)) + 1
		return b.Put(k, u64(s.Number))
	})
	if err != nil {
		return s, fmt.Errorf("store: next sequence %s: %w", counter, err)
	}
	return s, nil
}
