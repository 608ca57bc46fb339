package store

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
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

// PutHeld keeps an envelope until it can be opened or expires.
func (d *DB) PutHeld(h *HeldEnvelope) error {
	err := d.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bHeld)
		if err != nil {
			return err
		}
		return putJSON(b, []byte(h.Key), h)
	})
	if err != nil {
		return fmt.Errorf("store: hold envelope: %w", err)
	}
	return nil
}

// Held returns every held envelope.
func (d *DB) Held() ([]*HeldEnvelope, error) {
	var out []*HeldEnvelope
	err := d.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bHeld)
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			h := &HeldEnvelope{}
			if err := json.Unmarshal(v, h); err != nil {
				return err
			}
			out = append(out, h)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: held envelopes: %w", err)
	}
	return out, nil
}

// CountHeld counts the held envelopes whose key starts with prefix.
func (d *DB) CountHeld(prefix string) (int, error) {
	n := 0
	err := d.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bHeld)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, _ := c.Seek([]byte(prefix)); k != nil && bytes.HasPrefix(k, []byte(prefix)); k, _ = c.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: count held envelopes: %w", err)
	}
	return n, nil
}

// DeleteHeld drops a held envelope.
func (d *DB) DeleteHeld(key string) error {
	return d.db.Update(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bHeld); b != nil {
			return b.Delete([]byte(key))
		}
		return nil
	})
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
