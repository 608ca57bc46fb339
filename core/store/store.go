// Package store is a node's durable state in one bbolt file: the roster log
// and secret state of each circle, adapter cursors, the outbox, the inbox
// with its dedupe set, the app's acked cursor, the peer cache, presence
// sequence numbers, the listen ports of the last run and counters.
//
// Every method is one bbolt transaction, fsynced before it returns, so
// whatever a method reported as done survives a crash. The API is typed on
// purpose: there is no generic key/value access.
package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterr "go.etcd.io/bbolt/errors"
)

// Buckets.
var (
	bRoster   = []byte("roster")    // circle ID → nested bucket: op hash → op bytes
	bKeys     = []byte("keys")      // circle ID → circle secret state (root, contributions, sender keys, invites)
	bCursors  = []byte("cursors")   // channel ID → adapter cursor
	bOutbox   = []byte("outbox")    // seq (8) → OutboxItem JSON
	bOutboxID = []byte("outboxid")  // message ID → seq (8)
	bInbox    = []byte("inbox")     // seq (8) → InboxMessage JSON
	bDedupe   = []byte("dedupe")    // dedupe key → until (8, Unix ns)
	bMeta     = []byte("meta")      // app cursor, own presence sequence
	bPeers    = []byte("peercache") // peer ID → core/peerstore record
	bOldPeers = []byte("peers")     // the cache before health scores: dropped at Open
	bPresence = []byte("presence")  // peer ID → highest presence sequence seen (8)
	bCounters = []byte("counters")  // name → int64 (8)

	allBuckets = [][]byte{bRoster, bKeys, bCursors, bOutbox, bOutboxID, bInbox, bDedupe, bMeta, bPeers, bPresence, bCounters}

	kAppCursor   = []byte("app-cursor")
	kPresenceSeq = []byte("presence-seq")
	kUptime      = []byte("uptime")
	kListen      = []byte("listen")
)

// ErrLocked means another process has the store open.
var ErrLocked = errors.New("store: the data file is in use by another remora process (is the daemon already running?); stop it, or give this one another data directory")

// ErrNotFound means the record does not exist.
var ErrNotFound = errors.New("store: not found")

// Options configure Open. The zero value is usable.
type Options struct {
	// LockTimeout is how long Open waits for another process to release the
	// file; default 1 s.
	LockTimeout time.Duration
	// Now is the clock (dedupe expiry); time.Now when nil.
	Now func() time.Time
}

// DB is an open store. It is safe for concurrent use.
type DB struct {
	db  *bolt.DB
	now func() time.Time
}

// Open opens (creating, mode 0600) the store at path.
func Open(path string, opts Options) (*DB, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout})
	if errors.Is(err, bolterr.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s", ErrLocked, path)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		db.Close()
		return nil, fmt.Errorf("store: %s has mode %04o and is readable by other users; run `chmod 600 %s`", path, st.Mode().Perm(), path)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bOldPeers) != nil {
			if err := tx.DeleteBucket(bOldPeers); err != nil {
				return err
			}
		}
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: init %s: %w", path, err)
	}
	return &DB{db: db, now: opts.Now}, nil
}

// Close closes the store.
func (d *DB) Close() error { return d.db.Close() }

// WriteTo writes a consistent snapshot of the whole store (a bbolt file), for
// backups.
func (d *DB) WriteTo(w io.Writer) (n int64, err error) {
	err = d.db.View(func(tx *bolt.Tx) error {
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

func u64(x uint64) []byte { return binary.BigEndian.AppendUint64(nil, x) }

func getU64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func putJSON(b *bolt.Bucket, k []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, raw)
}

// ---- circles ----

// SaveCircle stores a circle's roster ops (added to those already stored;
// ops are immutable and named by hash) and replaces its secret state, in one
// transaction.
func (d *DB) SaveCircle(circle [16]byte, ops [][]byte, state []byte) error {
	err := d.db.Update(func(tx *bolt.Tx) error {
		rb, err := tx.Bucket(bRoster).CreateBucketIfNotExists(circle[:])
		if err != nil {
			return err
		}
		for _, op := range ops {
			h := hashOp(op)
			if rb.Get(h) == nil {
				if err := rb.Put(h, op); err != nil {
					return err
				}
			}
		}
		if state != nil {
			return tx.Bucket(bKeys).Put(circle[:], state)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: save circle: %w", err)
	}
	return nil
}

// LoadCircle returns a circle's roster ops (in no particular order: verify
// and order them with circle.VerifyLog) and secret state. ErrNotFound if the
// store holds no such circle.
func (d *DB) LoadCircle(circle [16]byte) (ops [][]byte, state []byte, err error) {
	err = d.db.View(func(tx *bolt.Tx) error {
		rb := tx.Bucket(bRoster).Bucket(circle[:])
		if rb == nil {
			return ErrNotFound
		}
		if err := rb.ForEach(func(_, v []byte) error {
			ops = append(ops, append([]byte(nil), v...))
			return nil
		}); err != nil {
			return err
		}
		if s := tx.Bucket(bKeys).Get(circle[:]); s != nil {
			state = append([]byte(nil), s...)
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("store: load circle: %w", err)
	}
	return ops, state, nil
}

// Circles lists the stored circle IDs.
func (d *DB) Circles() ([][16]byte, error) {
	var out [][16]byte
	err := d.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bRoster).ForEach(func(k, _ []byte) error {
			if len(k) == 16 {
				out = append(out, [16]byte(k))
			}
			return nil
		})
	})
	return out, err
}

// DeleteCircle forgets a circle (after leaving it).
func (d *DB) DeleteCircle(circle [16]byte) error {
	return d.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bRoster).DeleteBucket(circle[:]); err != nil && !errors.Is(err, bolterr.ErrBucketNotFound) {
			return err
		}
		return tx.Bucket(bKeys).Delete(circle[:])
	})
}

// ---- adapter cursors ----

// PutCursor stores a channel's adapter cursor. Prefer InboxPut with Cursor
// set, which moves the cursor in the same transaction as the delivery.
func (d *DB) PutCursor(channel string, cursor []byte) error {
	return d.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bCursors).Put([]byte(channel), cursor) })
}

// Cursor returns a channel's adapter cursor (nil if none).
func (d *DB) Cursor(channel string) ([]byte, error) {
	var out []byte
	err := d.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bCursors).Get([]byte(channel)); v != nil {
			out = append([]byte(nil), v...)
		}
		return nil
	})
	return out, err
}

// ---- peer cache ----

// PeerCache is the bbolt backend of core/peerstore (the peer cache with
// health): opaque records keyed by peer ID bytes.
type PeerCache struct{ d *DB }

// PeerCache returns the peer cache backend.
func (d *DB) PeerCache() PeerCache { return PeerCache{d} }

// Load calls fn for every record.
func (c PeerCache) Load(ctx context.Context, fn func(key, value []byte) error) error {
	return c.d.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bPeers).ForEach(func(k, v []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			return fn(append([]byte(nil), k...), append([]byte(nil), v...))
		})
	})
}

// Apply stores puts and drops deletes in one transaction: core/peerstore
// gathers a burst of changes into one call, one fsync.
func (c PeerCache) Apply(_ context.Context, puts map[string][]byte, deletes []string) error {
	err := c.d.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bPeers)
		for k, v := range puts {
			if err := b.Put([]byte(k), v); err != nil {
				return err
			}
		}
		for _, k := range deletes {
			if err := b.Delete([]byte(k)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: peer cache apply: %w", err)
	}
	return nil
}

// ---- presence sequence numbers ----

// NextPresenceSeq returns this device's next presence sequence number,
// persisted so it never repeats across restarts.
func (d *DB) NextPresenceSeq() (uint64, error) {
	var n uint64
	err := d.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bMeta)
		n = getU64(b.Get(kPresenceSeq)) + 1
		return b.Put(kPresenceSeq, u64(n))
	})
	return n, err
}

// Uptime returns when this device's current stretch of uptime began and
// when it was last seen running (zero times if never recorded).
func (d *DB) Uptime() (since, seen time.Time, err error) {
	err = d.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bMeta).Get(kUptime)
		if len(v) == 16 {
			since = time.UnixMilli(int64(getU64(v[:8])))
			seen = time.UnixMilli(int64(getU64(v[8:])))
		}
		return nil
	})
	return since, seen, err
}

// SetUptime records the current stretch of uptime (see Uptime).
func (d *DB) SetUptime(since, seen time.Time) error {
	return d.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bMeta).Put(kUptime, append(u64(uint64(since.UnixMilli())), u64(uint64(seen.UnixMilli()))...))
	})
}

// ListenAddrs returns the listen addresses recorded by SetListenAddrs
// (none if never recorded).
func (d *DB) ListenAddrs() ([]string, error) {
	var out []string
	err := d.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bMeta).Get(kListen)
		if v == nil {
			return nil
		}
		return json.Unmarshal(v, &out)
	})
	if err != nil {
		return nil, fmt.Errorf("store: listen addresses: %w", err)
	}
	return out, nil
}

// SetListenAddrs records the addresses the transport bound, so the next
// start can listen on the same ports (core/listenport).
func (d *DB) SetListenAddrs(addrs []string) error {
	return d.db.Update(func(tx *bolt.Tx) error { return putJSON(tx.Bucket(bMeta), kListen, addrs) })
}

// SeePresence records a peer's presence sequence number and reports whether
// it is newer than any seen before (highest wins).
func (d *DB) SeePresence(peer string, seq uint64) (newer bool, err error) {
	err = d.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bPresence)
		if seq <= getU64(b.Get([]byte(peer))) && b.Get([]byte(peer)) != nil {
			return nil
		}
		newer = true
		return b.Put([]byte(peer), u64(seq))
	})
	return newer, err
}

// ---- counters ----

// Count adds delta to a named counter (dropped envelopes by reason, …).
func (d *DB) Count(name string, delta int64) error {
	return d.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bCounters)
		return b.Put([]byte(name), u64(getU64(b.Get([]byte(name)))+uint64(delta)))
	})
}

// Counters returns every counter.
func (d *DB) Counters() (map[string]int64, error) {
	out := map[string]int64{}
	err := d.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bCounters).ForEach(func(k, v []byte) error {
			out[string(k)] = int64(getU64(v))
			return nil
		})
	})
	return out, err
}
