package store

import (
	"path/filepath"
	"testing"
	"time"
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
