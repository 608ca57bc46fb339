package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ---- outbox ----

// OutboxItem is a message accepted for delivery. Once OutboxPut returns, it
// survives a crash.
type OutboxItem struct {
	ID      [16]byte  `json:"id"` // message ID
	Circle  [16]byte  `json:"circle"`
	To      []string  `json:"to,omitempty"` // peer IDs still to ack; empty for a broadcast awaiting posting
	Kind    uint16    `json:"kind"`
	Body    []byte    `json:"body"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	// Attempts and NextTry are the delivery's own bookkeeping.
	Attempts int       `json:"attempts"`
	NextTry  time.Time `json:"next_try,omitzero"`
	// State is the sender's delivery bookkeeping (mode, sequence, epoch,
	// channels posted to), opaque to the store.
	State []byte `json:"state,omitempty"`

	Seq uint64 `json:"-"` // assigned by OutboxPut: order of acceptance
}

// ErrDuplicateID means an outbox item with that message ID already exists.
var ErrDuplicateID = errors.New("store: outbox already holds this message ID")

// OutboxPut accepts a message: it is durable when this returns.
func (d *DB) OutboxPut(it *OutboxItem) error {
	err := d.db.Update(func(tx *bolt.Tx) error {
		idx := tx.Bucket(bOutboxID)
		if idx.Get(it.ID[:]) != nil {
			return ErrDuplicateID
		}
		b := tx.Bucket(bOutbox)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		it.Seq = seq
		if err := putJSON(b, u64(seq), it); err != nil {
			return err
		}
		return idx.Put(it.ID[:], u64(seq))
	})
	if err != nil {
		return fmt.Errorf("store: outbox put: %w", err)
	}
	return nil
}

// OutboxUpdate rewrites an item (attempts, remaining recipients).
func (d *DB) OutboxUpdate(it *OutboxItem) error {
	err := d.db.Update(func(tx *bolt.Tx) error {
		seq := tx.Bucket(bOutboxID).Get(it.ID[:])
		if seq == nil {
			return ErrNotFound
		}
		it.Seq = getU64(seq)
		return putJSON(tx.Bucket(bOutbox), seq, it)
	})
	if err != nil {
		return fmt.Errorf("store: outbox update: %w", err)
	}
	return nil
}

// OutboxDelete removes a delivered (or given-up) item.
func (d *DB) OutboxDelete(id [16]byte) error {
	return d.db.Update(func(tx *bolt.Tx) error {
		idx := tx.Bucket(bOutboxID)
		seq := idx.Get(id[:])
		if seq == nil {
			return nil
		}
		if err := tx.Bucket(bOutbox).Delete(seq); err != nil {
			return err
		}
		return idx.Delete(id[:])
	})
}

// Outbox returns every queued item in acceptance order.
func (d *DB) Outbox() ([]OutboxItem, error) {
	var out []OutboxItem
	err := d.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bOutbox).ForEach(func(k, v []byte) error {
			var it OutboxItem
			if err := json.Unmarshal(v, &it); err != nil {
				return err
			}
			it.Seq = getU64(k)
			out = append(out, it)
			return nil
		})
	})
	return out, err
}

// OutboxExpire removes items past their expiry and returns them, so the node
// can raise "undeliverable" events.
func (d *DB) OutboxExpire() ([]OutboxItem, error) {
	now := d.now()
	var gone []OutboxItem
	err := d.db.Update(func(tx *bolt.Tx) error {
		b, idx := tx.Bucket(bOutbox), tx.Bucket(bOutboxID)
		var keys [][]byte
		if err := b.ForEach(func(k, v []byte) error {
			var it OutboxItem
			if err := json.Unmarshal(v, &it); err != nil {
				return err
			}
			if now.After(it.Expires) {
				it.Seq = getU64(k)
				gone = append(gone, it)
				keys = append(keys, append([]byte(nil), k...))
			}
			return nil
		}); err != nil {
			return err
		}
		for i, k := range keys {
			if err := b.Delete(k); err != nil {
				return err
			}
			if err := idx.Delete(gone[i].ID[:]); err != nil {
				return err
			}
		}
		return nil
	})
	return gone, err
}

// ---- inbox ----

// InboxMessage is a verified message waiting for the app.
type InboxMessage struct {
	Seq       uint64    `json:"-"` // assigned by InboxPut; the app's cursor counts these
	Circle    [16]byte  `json:"circle"`
	Sender    string    `json:"sender"` // peer ID
	ID        [16]byte  `json:"id"`     // message ID
	Kind      uint16    `json:"kind"`
	SenderSeq uint64    `json:"sender_seq"` // the sender's sequence number (order, gaps)
	Timestamp time.Time `json:"timestamp"`
	Body      []byte    `json:"body"`
	// Direct is true for a message sealed to this device alone; Path is how
	// it arrived (lan, direct, relayed, channel:NAME); Received is when.
	Direct   bool      `json:"direct,omitempty"`
	Path     string    `json:"path,omitempty"`
	Received time.Time `json:"received,omitzero"`

	// DedupeKey and DedupeUntil come from envelope.Message: the pair is
	// remembered until then, and a second copy is a duplicate.
	DedupeKey   []byte    `json:"-"`
	DedupeUntil time.Time `json:"-"`

	// Channel and Cursor, when Channel is set, move that channel's adapter
	// cursor in the same transaction: the delivery is accepted and the
	// cursor advanced together, or neither.
	Channel string `json:"-"`
	Cursor  []byte `json:"-"`
}

// InboxPut stores a message for the app unless its dedupe key was seen
// before and has not expired, in which case dup is true and nothing but the
// cursor changes. The dedupe insert, the inbox insert and the cursor move are
// one transaction: a crash leaves all or none.
func (d *DB) InboxPut(m *InboxMessage) (dup bool, err error) {
	if len(m.DedupeKey) == 0 {
		return false, errors.New("store: inbox put: message has no dedupe key")
	}
	now := d.now()
	err = d.db.Update(func(tx *bolt.Tx) error {
		if m.Channel != "" {
			if err := tx.Bucket(bCursors).Put([]byte(m.Channel), m.Cursor); err != nil {
				return err
			}
		}
		if dup, err = remember(tx, m.DedupeKey, m.DedupeUntil, now); dup || err != nil {
			return err
		}
		b := tx.Bucket(bInbox)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		m.Seq = seq
		return putJSON(b, u64(seq), m)
	})
	if err != nil {
		return false, fmt.Errorf("store: inbox put: %w", err)
	}
	return dup, nil
}

// InboxAfter returns up to limit messages with Seq > after, in order.
func (d *DB) InboxAfter(after uint64, limit int) ([]InboxMessage, error) {
	var out []InboxMessage
	err := d.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bInbox).Cursor()
		for k, v := c.Seek(u64(after + 1)); k != nil && (limit <= 0 || len(out) < limit); k, v = c.Next() {
			var m InboxMessage
			if err := json.Unmarshal(v, &m); err != nil {
				return err
			}
			m.Seq = getU64(k)
			out = append(out, m)
		}
		return nil
	})
	return out, err
}

// AppCursor returns the highest inbox Seq the app acknowledged.
func (d *DB) AppCursor() (uint64, error) {
	var n uint64
	err := d.db.View(func(tx *bolt.Tx) error {
		n = getU64(tx.Bucket(bMeta).Get(kAppCursor))
		return nil
	})
	return n, err
}

// AckApp moves the app cursor to seq (never backwards) and deletes the
// inbox messages up to it, in one transaction. The dedupe entries stay until
// they expire, so a late copy is still recognized.
func (d *DB) AckApp(seq uint64) error {
	return d.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bMeta)
		if seq <= getU64(meta.Get(kAppCursor)) {
			return nil
		}
		if err := meta.Put(kAppCursor, u64(seq)); err != nil {
			return err
		}
		c := tx.Bucket(bInbox).Cursor()
		for k, _ := c.First(); k != nil && getU64(k) <= seq; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
}

// PruneDedupe deletes dedupe entries past their time and returns how many.
func (d *DB) PruneDedupe() (int, error) {
	now := uint64(d.now().UnixNano())
	n := 0
	err := d.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(bDedupe).Cursor()
		for k, v := c.First(); k != nil; {
			if getU64(v) <= now {
				kk := append([]byte(nil), k...)
				if err := c.Delete(); err != nil {
					return err
				}
				n++
				k, v = c.Seek(kk)
				continue
			}
			k, v = c.Next()
		}
		return nil
	})
	return n, err
}

// Remember records a dedupe key until the given time and reports whether it
// was already recorded and not yet past its time: the control messages that
// never reach the inbox (acks, keys, roster operations, gossip, punches) are
// deduplicated against the same set as InboxPut's. It implements
// envelope.ReplayStore.
func (d *DB) Remember(key []byte, until time.Time) (seen bool, err error) {
	if len(key) == 0 {
		return false, errors.New("store: remember: empty dedupe key")
	}
	now := d.now()
	err = d.db.Update(func(tx *bolt.Tx) error {
		seen, err = remember(tx, key, until, now)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("store: remember: %w", err)
	}
	return seen, nil
}

// remember is Remember's and InboxPut's dedupe step within tx: seen if
// key is recorded and not past its time, else recorded until until (now
// at the earliest).
func remember(tx *bolt.Tx, key []byte, until, now time.Time) (seen bool, err error) {
	dd := tx.Bucket(bDedupe)
	if v := dd.Get(key); v != nil && int64(getU64(v)) > now.UnixNano() {
		return true, nil
	}
	if until.IsZero() || until.Before(now) {
		until = now
	}
	return false, dd.Put(key, u64(uint64(until.UnixNano())))
}

// Forget drops a dedupe key, so that a copy of a message whose handling
// failed is handled when it comes again.
func (d *DB) Forget(key []byte) error {
	err := d.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bDedupe).Delete(key) })
	if err != nil {
		return fmt.Errorf("store: forget: %w", err)
	}
	return nil
}
