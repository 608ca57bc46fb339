package store

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// bMailbox holds core/mailbox's records (envelopes kept for other members,
// wake-up registrations): opaque values under keys the mailbox chooses.
// Created on first use.
var bMailbox = []byte("mailbox")

// Mailbox is the bbolt backend of core/mailbox.
type Mailbox struct{ d *DB }

// Mailbox returns the friends' mailbox backend.
func (d *DB) Mailbox() Mailbox { return Mailbox{d} }

// Load calls fn for every record.
func (m Mailbox) Load(ctx context.Context, fn func(key, value []byte) error) error {
	return m.d.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bMailbox)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			return fn(append([]byte(nil), k...), append([]byte(nil), v...))
		})
	})
}

// Get returns one record, or ErrNotFound.
func (m Mailbox) Get(key []byte) ([]byte, error) {
	var out []byte
	err := m.d.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bMailbox); b != nil {
			if v := b.Get(key); v != nil {
				out = append([]byte(nil), v...)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: mailbox record: %w", err)
	}
	if out == nil {
		return nil, ErrNotFound
	}
	return out, nil
}

// Put stores a record. Concurrent Puts (deposits from several senders, or
// several of one sender's in flight) share one transaction and one fsync
// (bbolt's Batch); each returns only once its record is durable.
func (m Mailbox) Put(key, value []byte) error {
	err := m.d.db.Batch(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bMailbox)
		if err != nil {
			return err
		}
		return b.Put(key, value)
	})
	if err != nil {
		return fmt.Errorf("store: mailbox put: %w", err)
	}
	return nil
}

// Delete drops records, in one transaction.
func (m Mailbox) Delete(keys ...[]byte) error {
	err := m.d.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bMailbox)
		if b == nil {
			return nil
		}
		for _, k := range keys {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: mailbox delete: %w", err)
	}
	return nil
}
