package store

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSnapshotRestore(t *testing.T) {
	c := &clock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	d := open(t, c)
	if err := d.SaveCircle([16]byte{1}, [][]byte{[]byte("op")}, []byte("secret state")); err != nil {
		t.Fatal(err)
	}
	if _, err := d.InboxPut(msg(1, c.t.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	var snap bytes.Buffer
	if _, err := d.WriteTo(&snap); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "restored.db")
	if err := RestoreSnapshot(path, bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	if err := RestoreSnapshot(path, bytes.NewReader(snap.Bytes())); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("restore over an existing store: %v", err)
	}
	r, err := Open(path, Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ops, st, err := r.LoadCircle([16]byte{1})
	if err != nil || len(ops) != 1 || string(st) != "secret state" {
		t.Fatalf("restored circle: %q %q %v", ops, st, err)
	}
	if dup, _ := r.InboxPut(msg(1, c.t.Add(time.Hour))); !dup {
		t.Fatal("restored store forgot its dedupe set")
	}
}
