package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestHeldAndSequences(t *testing.T) {
	path := filepath.Join(t.TempDir(), "remora.db")
	d, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := &HeldEnvelope{Key: "k1", Channel: "c", Raw: []byte("env"), Until: time.Now().Add(time.Hour)}
	if err := d.PutHeld(h); err != nil {
		t.Fatal(err)
	}
	a, _ := d.NextSeq("b/circle")
	b, _ := d.NextSeq("b/circle")
	other, _ := d.NextSeq("d/circle")
	if a.Number != 1 || b.Number != 2 || other.Number != 1 || a.Incarnation != b.Incarnation || a.Incarnation == 0 {
		t.Fatalf("sequences %+v %+v %+v", a, b, other)
	}
	d.Close()
	// Both survive a reopen; the incarnation stays.
	d, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	held, err := d.Held()
	if err != nil || len(held) != 1 || string(held[0].Raw) != "env" {
		t.Fatalf("held after reopen: %v, %v", held, err)
	}
	c, _ := d.NextSeq("b/circle")
	if c.Number != 3 || c.Incarnation != a.Incarnation {
		t.Fatalf("after reopen: %+v, want number 3 and incarnation %d", c, a.Incarnation)
	}
	if err := d.DeleteHeld("k1"); err != nil {
		t.Fatal(err)
	}
	if held, _ := d.Held(); len(held) != 0 {
		t.Fatalf("held after delete: %v", held)
	}
}

func TestCountHeld(t *testing.T) {
	d, err := Open(filepath.Join(t.TempDir(), "remora.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if n, err := d.CountHeld("k:a:"); err != nil || n != 0 {
		t.Fatalf("count before any hold: %d, %v", n, err)
	}
	for _, k := range []string{"k:a:1", "k:a:2", "k:ab:1", "f:a:1", "k:b:1", "k:a:3"} {
		if err := d.PutHeld(&HeldEnvelope{Key: k, Raw: []byte(k), Until: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	for prefix, want := range map[string]int{"k:a:": 3, "k:ab:": 1, "k:": 5, "f:a:": 1, "k:c:": 0, "": 6} {
		if n, err := d.CountHeld(prefix); err != nil || n != want {
			t.Errorf("CountHeld(%q) = %d, %v; want %d", prefix, n, err, want)
		}
	}
}

// TestHeldQuotaBytes: PutHeldWithin counts bytes, not only items, per
// prefix and over everything held, and the total follows deletions.
func TestHeldQuotaBytes(t *testing.T) {
	d, err := Open(filepath.Join(t.TempDir(), "remora.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	until := time.Now().Add(time.Hour)
	put := func(key string, size int, q HeldQuota) error {
		return d.PutHeldWithin(&HeldEnvelope{Key: key, Raw: make([]byte, size), Until: until}, q)
	}
	q := HeldQuota{Prefix: "f:a:", MaxBytes: 3 << 20, TotalBytes: 5 << 20}
	// Three 1 MiB envelopes do not fit in 3 MiB with their keys and records.
	for i, want := range []bool{true, true, false} {
		err := put(fmt.Sprintf("f:a:%d", i), 1<<20/2, q) // JSON base64 makes ~0.67 MiB
		err = errors.Join(err, put(fmt.Sprintf("f:a:%d:b", i), 1<<20/2, q))
		if got := err == nil; got != want {
			t.Fatalf("put %d: err %v, want ok=%v", i, err, want)
		}
	}
	var qe *HeldQuotaError
	if err := put("f:a:x", 1<<20, q); !errors.As(err, &qe) || qe.Total || !errors.Is(err, ErrHeldQuota) {
		t.Fatalf("sender over its bytes: %v", err)
	}
	// Another prefix has its own bytes, until the total is reached.
	qb := HeldQuota{Prefix: "f:b:", MaxBytes: 3 << 20, TotalBytes: 5 << 20}
	if err := put("f:b:0", 1<<20, qb); err != nil {
		t.Fatal(err)
	}
	if err := put("f:b:1", 1<<20, qb); !errors.As(err, &qe) || !qe.Total {
		t.Fatalf("past the total: %v", err)
	}
	_, all, _ := d.HeldUsage("")
	if all > 5<<20 {
		t.Fatalf("%d bytes held, quota 5 MiB", all)
	}
	// Deleting frees the total again; the kept total matches a count.
	if n, err := d.DeleteHeldPrefix("f:a:"); err != nil || n < 2 {
		t.Fatalf("DeleteHeldPrefix: %d, %v", n, err)
	}
	if err := put("f:b:1", 1<<20, qb); err != nil {
		t.Fatalf("after deleting: %v", err)
	}
	// The running total is kept right by every path that changes the
	// held envelopes: a prefix deleted, one replaced, one deleted.
	checkTotal := func(after string) {
		t.Helper()
		d.db.View(func(tx *bolt.Tx) error {
			kept := int64(getU64(tx.Bucket(bMeta).Get(kHeldBytes)))
			_, counted := prefixUsage(tx.Bucket(bHeld), nil)
			if kept != counted {
				t.Errorf("after %s: kept total %d, counted %d", after, kept, counted)
			}
			return nil
		})
	}
	checkTotal("deleting a prefix")
	if err := put("f:b:1", 10, qb); err != nil {
		t.Fatal(err)
	}
	checkTotal("replacing an envelope with a smaller one")
	if err := d.DeleteHeld("f:b:0"); err != nil {
		t.Fatal(err)
	}
	checkTotal("deleting one envelope")
	// An item quota still holds for many small envelopes.
	qi := HeldQuota{Prefix: "k:c:", MaxItems: 2}
	for i, want := range []bool{true, true, false} {
		if err := put(fmt.Sprintf("k:c:%d", i), 10, qi); (err == nil) != want {
			t.Fatalf("small %d: %v", i, err)
		}
	}
}

// TestWalkHeld walks the held envelopes page by page, in key order: one
// read transaction per page, so a walk never holds more than a page, and
// the walker may delete what it is given without skipping the rest.
func TestWalkHeld(t *testing.T) {
	d, err := Open(filepath.Join(t.TempDir(), "remora.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for i := range 10 {
		if err := d.PutHeld(&HeldEnvelope{Key: fmt.Sprintf("k%02d", i), Until: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		delete bool
	}{{"read", false}, {"delete each", true}} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			reads := d.db.Stats().TxN
			err := d.WalkHeld(3, func(h *HeldEnvelope) {
				got = append(got, h.Key)
				if tc.delete {
					if err := d.DeleteHeld(h.Key); err != nil {
						t.Fatal(err)
					}
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			// 3+3+3+1: four pages, each its own read.
			if pages := d.db.Stats().TxN - reads; pages != 4 {
				t.Errorf("%d read transactions for 10 envelopes in pages of 3, want 4", pages)
			}
			if len(got) != 10 || got[0] != "k00" || got[9] != "k09" {
				t.Fatalf("walked %v", got)
			}
		})
	}
	if left, _ := d.CountHeld(""); left != 0 {
		t.Fatalf("%d left after deleting each one walked", left)
	}
}
