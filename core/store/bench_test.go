package store

import (
	"encoding/binary"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkInboxPut measures InboxPut (dedupe check + insert + inbox
// insert + cursor move, one fsynced bbolt transaction) for new messages.
func BenchmarkInboxPut(b *testing.B) {
	d, err := Open(filepath.Join(b.TempDir(), "remora.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	body := make([]byte, 1024)
	until := time.Now().Add(time.Hour)
	i := 0
	for b.Loop() {
		key := binary.BigEndian.AppendUint64([]byte("peer/"), uint64(i))
		m := &InboxMessage{Sender: "peer", Body: body, DedupeKey: key, DedupeUntil: until, Channel: "dir:a", Cursor: key}
		if dup, err := d.InboxPut(m); err != nil || dup {
			b.Fatal(dup, err)
		}
		i++
	}
}

// BenchmarkInboxPutDuplicate measures InboxPut for a copy already seen.
func BenchmarkInboxPutDuplicate(b *testing.B) {
	d, err := Open(filepath.Join(b.TempDir(), "remora.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	m := &InboxMessage{Sender: "peer", Body: make([]byte, 1024), DedupeKey: []byte("peer/1"), DedupeUntil: time.Now().Add(time.Hour)}
	if _, err := d.InboxPut(m); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if dup, err := d.InboxPut(m); err != nil || !dup {
			b.Fatal(dup, err)
		}
	}
}
