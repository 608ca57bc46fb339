package seqindex_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/seqindex"
)

func open(t *testing.T, path, scope string) (*seqindex.Index, string) {
	t.Helper()
	x, fresh, err := seqindex.Open(path, scope)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	return x, fresh
}

func names(es []seqindex.Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Name)
	}
	return out
}

func TestAddAfterReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "idx")
	x, fresh := open(t, path, "https://store.example/circle")
	if fresh != "new" {
		t.Fatalf("fresh = %q, want new", fresh)
	}
	added, err := x.Add("b", "a", "b", "with space", "quote\"d\nline")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(names(added)) != fmt.Sprint([]string{"a", "b", "quote\"d\nline", "with space"}) {
		t.Fatalf("added %q", names(added))
	}
	if again, _ := x.Add("a", "b"); len(again) != 0 {
		t.Fatalf("re-adding indexed names gave %v", again)
	}
	all := x.After(0)
	if len(all) != 4 {
		t.Fatalf("After(0) = %v", all)
	}
	cur := x.Cursor(all[1].Seq)
	late, _ := x.Add("0-late") // sorts first, numbered last
	if late[0].Seq != 5 {
		t.Fatalf("late item got %d, want 5", late[0].Seq)
	}
	pos, err := x.Start(cur)
	rest := x.After(pos)
	if err != nil || fmt.Sprint(names(rest)) != fmt.Sprint([]string{"quote\"d\nline", "with space", "0-late"}) {
		t.Fatalf("after the cursor: %q, %v", names(rest), err)
	}
	x.Close()

	y, fresh := open(t, path, "https://store.example/circle")
	if fresh != "" {
		t.Fatalf("reopen started over: %s", fresh)
	}
	pos, err = y.Start(cur)
	rest2 := y.After(pos)
	if err != nil || fmt.Sprint(names(rest2)) != fmt.Sprint(names(rest)) {
		t.Fatalf("after reopen: %q, %v", names(rest2), err)
	}
	if seq, ok := y.Has("0-late"); !ok || seq != 5 {
		t.Fatalf("Has = %d %v", seq, ok)
	}
}

func TestCursorInvalid(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "idx")
	x, _ := open(t, path, "s")
	x.Add("a", "b", "c")
	all := x.After(0)
	last := x.Cursor(all[2].Seq)
	mid := x.Cursor(all[1].Seq)
	other, _ := open(t, filepath.Join(dir, "other"), "s")

	tests := []struct {
		name   string
		idx    *seqindex.Index
		cursor []byte
	}{
		{"another index", other, mid},
		{"garbage", x, []byte("not a cursor at all")},
		{"ahead", x, seqindex.EncodeCursor(x.ID(), 4)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.idx.Start(tt.cursor)
			if !errors.Is(err, sdk.ErrCursorInvalid) {
				t.Fatalf("got %v, want sdk.ErrCursorInvalid", err)
			}
		})
	}
	if pos, err := x.Start(last); err != nil || len(x.After(pos)) != 0 {
		t.Fatalf("the last cursor: %v %v", x.After(pos), err)
	}

	// State restored from an older copy: the cursor is ahead of it.
	old, _ := os.ReadFile(path)
	x.Add("d", "e")
	all = x.After(0)
	newest := x.Cursor(all[len(all)-1].Seq)
	x.Close()
	os.WriteFile(path, old, 0o600)
	y, _ := open(t, path, "s")
	if _, err := y.Start(newest); !errors.Is(err, sdk.ErrCursorInvalid) {
		t.Fatalf("a cursor from after the restored copy: got %v, want sdk.ErrCursorInvalid", err)
	}

	// Even after the restored index numbered new items past the cursor:
	// the cursor's position names another item now.
	y.Add("b0", "d", "e") // b0 is new and sorts first
	if _, err := y.Start(newest); !errors.Is(err, sdk.ErrCursorInvalid) {
		t.Fatalf("a cursor whose position is another item in the restored index: got %v, want sdk.ErrCursorInvalid", err)
	}
}

func TestScopeAndDamage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "idx")
	x, _ := open(t, path, "one")
	x.Add("a")
	id := x.ID()
	x.Close()
	if y, fresh := open(t, path, "two"); fresh != "another scope" || y.ID() == id || y.Len() != 0 {
		t.Fatalf("another scope: fresh %q, len %d", fresh, y.Len())
	} else {
		y.Close()
	}
	os.WriteFile(path, []byte("garbage\n"), 0o600)
	if _, fresh := open(t, path, "two"); fresh == "" {
		t.Fatal("a damaged file was loaded")
	}
}

func TestTornAppend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "idx")
	x, _ := open(t, path, "s")
	x.Add("a", "b")
	x.Close()
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`3 "c`) // a crash mid-append
	f.Close()
	y, fresh := open(t, path, "s")
	if fresh != "" || y.Len() != 2 {
		t.Fatalf("torn append: fresh %q, %d entries", fresh, y.Len())
	}
	if e, _ := y.Add("c"); e[0].Seq != 3 {
		t.Fatalf("after a torn append c got %d", e[0].Seq)
	}
}

func TestForget(t *testing.T) {
	path := filepath.Join(t.TempDir(), "idx")
	x, _ := open(t, path, "s")
	x.Add("a", "b", "c")
	if err := x.Forget("b", "nope"); err != nil {
		t.Fatal(err)
	}
	x.Close()
	y, _ := open(t, path, "s")
	all := y.After(0)
	if fmt.Sprint(names(all)) != "[a c]" || all[1].Seq != 3 {
		t.Fatalf("after Forget: %v", all)
	}
	if e, _ := y.Add("b"); e[0].Seq != 4 {
		t.Fatalf("a forgotten name came back as %d, want a new number", e[0].Seq)
	}
}

func TestMemoryOnly(t *testing.T) {
	x, fresh := open(t, "", "s")
	if fresh == "" {
		t.Fatal("memory index claims to be loaded")
	}
	if _, err := x.Add("a"); err != nil {
		t.Fatal(err)
	}
}

func FuzzDecodeCursor(f *testing.F) {
	var id [seqindex.IDLen]byte
	f.Add(seqindex.EncodeCursor(id, 0))
	f.Add(seqindex.EncodeCursor(id, 1<<40))
	f.Add([]byte{1})
	x, _, _ := seqindex.Open("", "s")
	x.Add("a")
	f.Add(x.Cursor(1)) // version 2, with the mark of "a"
	f.Fuzz(func(t *testing.T, b []byte) {
		id, seq, err := seqindex.DecodeCursor(b)
		if err != nil {
			return
		}
		again := seqindex.EncodeCursor(id, seq)
		if b[0] == 2 { // the marked form: the same, with 8 mark bytes after the ID
			again = append(append(append([]byte{2}, again[1:1+seqindex.IDLen]...), b[1+seqindex.IDLen:1+seqindex.IDLen+8]...), again[1+seqindex.IDLen:]...)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("%x decodes to (%x, %d), which encodes to %x", b, id, seq, again)
		}
	})
}

// An adapter for a service that can only be listed numbers what it sees,
// and resumes from cursors into its index.
func Example() {
	stateDir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(stateDir)
	idx, _, _ := seqindex.Open(filepath.Join(stateDir, "index"), "https://files.example/circle")
	defer idx.Close()

	pos, _ := idx.Start(nil) // a subscription from the start
	idx.Add("k2", "k1")      // the first listing
	for _, e := range idx.After(pos) {
		fmt.Println("deliver", e.Name, "seq", e.Seq)
		pos = e.Seq
	}
	cursor := idx.Cursor(pos) // the host keeps this

	pos, _ = idx.Start(cursor) // a later subscription resumes
	idx.Add("k1", "k0", "k2")  // a later listing: k0 arrived late
	for _, e := range idx.After(pos) {
		fmt.Println("deliver", e.Name, "seq", e.Seq)
	}
	// Output:
	// deliver k1 seq 1
	// deliver k2 seq 2
	// deliver k0 seq 3
}
