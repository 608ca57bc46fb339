package store

import (
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	kRelayListSeq     = []byte("relaylist-seq")
	kRelayListExpires = []byte("relaylist-expires")
	kRelayListBundle  = []byte("relaylist-bundle")
)

// RelayList returns the highest relay-list sequence accepted so far, that
// list's expiry and its bundle (zero values if none): a restart refuses
// anything older (rollback) and uses the stored list when it is newer than
// the one built in.
func (d *DB) RelayList() (seq uint64, expires time.Time, bundle []byte, err error) {
	err = d.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bMeta)
		seq = getU64(b.Get(kRelayListSeq))
		if v := getU64(b.Get(kRelayListExpires)); v != 0 {
			expires = time.Unix(0, int64(v)).UTC()
		}
		if v := b.Get(kRelayListBundle); v != nil {
			bundle = append([]byte(nil), v...)
		}
		return nil
	})
	return seq, expires, bundle, err
}

// SetRelayList stores an accepted relay list; a lower sequence than the
// stored one is ignored.
func (d *DB) SetRelayList(seq uint64, expires time.Time, bundle []byte) error {
	return d.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bMeta)
		if seq < getU64(b.Get(kRelayListSeq)) {
			return nil
		}
		if err := b.Put(kRelayListSeq, u64(seq)); err != nil {
			return err
		}
		if err := b.Put(kRelayListExpires, u64(uint64(expires.UnixNano()))); err != nil {
			return err
		}
		return b.Put(kRelayListBundle, bundle)
	})
}
