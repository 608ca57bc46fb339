package store

import (
	"path/filepath"
	"testing"
)

func TestJoinsSurviveReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "remora.db")
	d, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.PutJoin("a1", []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := d.PutJoin("b2", []byte("two")); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteJoin("b2"); err != nil {
		t.Fatal(err)
	}
	d = reopen(t, d, path)
	got, err := d.Joins()
	if err != nil || len(got) != 1 || string(got["a1"]) != "one" {
		t.Fatalf("after reopen: %v, %v", got, err)
	}
}
