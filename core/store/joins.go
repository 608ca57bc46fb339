package store

import (
	"bytes"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// bJoins holds this device's own joins waiting for a welcome: invite ID →
// the node's record of the join (it holds the invite token: the store file
// is 0600 like the keys). Created on first use.
var bJoins = []byte("joins")

// PutJoin stores (or replaces) a pending join.
func (d *DB) PutJoin(id string, rec []byte) error {
	err := d.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bJoins)
		if err != nil {
			return err
		}
		return b.Put([]byte(id), rec)
	})
	if err != nil {
		return fmt.Errorf("store: put join %s: %w", id, err)
	}
	return nil
}

// Joins returns every pending join by invite ID.
func (d *DB) Joins() (map[string][]byte, error) {
	out := map[string][]byte{}
	err := d.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bJoins)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			out[string(k)] = bytes.Clone(v)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: joins: %w", err)
	}
	return out, nil
}

// DeleteJoin forgets a join (welcomed, refused or expired).
func (d *DB) DeleteJoin(id string) error {
	err := d.db.Update(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bJoins); b != nil {
			return b.Delete([]byte(id))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: delete join %s: %w", id, err)
	}
	return nil
}
