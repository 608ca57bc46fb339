package node

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// countingCursors is a cursorStore that counts its writes.
type countingCursors struct {
	mu     sync.Mutex
	cur    []byte
	writes int
	fail   error
}

func (c *countingCursors) Cursor(string) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur, nil
}

func (c *countingCursors) PutCursor(_ string, cur []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return c.fail
	}
	c.cur = cur
	c.writes++
	return nil
}

func (c *countingCursors) get() ([]byte, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur, c.writes
}

// TestCursorSaverCoalesces: a flood of deliveries costs a few cursor
// writes, the newest cursor is written within the interval without more
// deliveries, and flush writes it at once.
func TestCursorSaverCoalesces(t *testing.T) {
	store := &countingCursors{}
	s := newCursorSaver(store, "c", 50*time.Millisecond)
	start := time.Now()
	for i := range 2000 {
		if err := s.put(fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	_, writes := store.get()
	if max := int(elapsed/(50*time.Millisecond)) + 2; writes > max {
		t.Errorf("2000 deliveries in %v made %d cursor writes, want at most %d", elapsed, writes, max)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if cur, _ := store.get(); bytes.Equal(cur, []byte("1999")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the newest cursor was not written within the interval")
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.put([]byte("2000")) // may be deferred
	if err := s.flush(); err != nil {
		t.Fatal(err)
	}
	if cur, _ := store.get(); !bytes.Equal(cur, []byte("2000")) {
		t.Errorf("after flush the stored cursor is %q, want 2000", cur)
	}
}

// TestCursorSaverReportsFailure: a deferred write that fails stops the
// next delivery, and flush reports it.
func TestCursorSaverReportsFailure(t *testing.T) {
	store := &countingCursors{}
	s := newCursorSaver(store, "c", time.Hour)
	if err := s.put([]byte("1")); err != nil { // written at once
		t.Fatal(err)
	}
	s.put([]byte("2")) // deferred
	store.fail = errors.New("disk full")
	if err := s.flush(); err == nil {
		t.Fatal("flush: a failed write went unreported")
	}
}
