package store

import (
	"bytes"
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

// RelayDial is what this node saw of one volunteer relay: its reservation
// attempts and how they ended.
type RelayDial struct {
	Peer                     string
	Successes, Failures      uint64
	LastSuccess, LastFailure time.Time
}

// kRelayDialPrefix keys one relay's outcomes in the meta bucket.
var kRelayDialPrefix = []byte("relaydial/")

// maxRelayDials bounds the relays whose outcomes are kept: the node uses a
// few relays at a time, and a list of 100,000 must not make it keep them all.
const maxRelayDials = 1024

// RecordRelayDial adds one reservation outcome of relay peer at time at.
// Past maxRelayDials relays, a new relay is not recorded.
func (d *DB) RecordRelayDial(peer string, ok bool, at time.Time) error {
	return d.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bMeta)
		k := append(append([]byte(nil), kRelayDialPrefix...), peer...)
		v := b.Get(k)
		if v == nil {
			n := 0
			c := b.Cursor()
			for ck, _ := c.Seek(kRelayDialPrefix); ck != nil && bytes.HasPrefix(ck, kRelayDialPrefix); ck, _ = c.Next() {
				n++
			}
			if n >= maxRelayDials {
				return nil
			}
		}
		r := decodeRelayDial(peer, v)
		if ok {
			r.Successes++
			r.LastSuccess = at
		} else {
			r.Failures++
			r.LastFailure = at
		}
		return b.Put(k, encodeRelayDial(r))
	})
}

// RelayDials returns the recorded outcomes, in peer order.
func (d *DB) RelayDials() ([]RelayDial, error) {
	var out []RelayDial
	err := d.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bMeta).Cursor()
		for k, v := c.Seek(kRelayDialPrefix); k != nil && bytes.HasPrefix(k, kRelayDialPrefix); k, v = c.Next() {
			out = append(out, decodeRelayDial(string(k[len(kRelayDialPrefix):]), v))
		}
		return nil
	})
	return out, err
}

func encodeRelayDial(r RelayDial) []byte {
	b := u64(r.Successes)
	b = append(b, u64(r.Failures)...)
	b = append(b, u64(uint64(r.LastSuccess.UnixNano()))...)
	return append(b, u64(uint64(r.LastFailure.UnixNano()))...)
}

func decodeRelayDial(peer string, v []byte) RelayDial {
	r := RelayDial{Peer: peer}
	if len(v) != 32 {
		return r
	}
	r.Successes, r.Failures = getU64(v[:8]), getU64(v[8:16])
	if t := getU64(v[16:24]); t != 0 && r.Successes > 0 {
		r.LastSuccess = time.Unix(0, int64(t)).UTC()
	}
	if t := getU64(v[24:32]); t != 0 && r.Failures > 0 {
		r.LastFailure = time.Unix(0, int64(t)).UTC()
	}
	return r
}
