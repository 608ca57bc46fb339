package node

import (
	"sync"
	"time"
)

// cursorEvery is how often a busy subscription writes its cursor.
const cursorEvery = 100 * time.Millisecond

// cursorSaver coalesces a subscription's cursor writes. A cursor is
// written at once when the last write is older than every, otherwise
// within every: a channel flooded with thousands of junk items (issue #20)
// then costs a few store commits, not one fsync per item, and new
// messages behind the junk are read sooner. Every envelope is durably
// handled before its cursor is given here, so a crash only delivers again
// what came in the last interval, which dedupe drops.
type cursorSaver struct {
	store   cursorStore
	channel string
	every   time.Duration

	mu      sync.Mutex
	pending []byte // the newest cursor not yet written; nil: none
	last    time.Time
	timer   *time.Timer
	err     error // a deferred write failed; the next put returns it
}

func newCursorSaver(store cursorStore, channel string, every time.Duration) *cursorSaver {
	return &cursorSaver{store: store, channel: channel, every: every}
}

// put saves cur, now or within every.
func (s *cursorSaver) put(cur []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.err; err != nil {
		s.err = nil
		return err
	}
	if wait := s.every - time.Since(s.last); wait > 0 {
		s.pending = cur
		if s.timer == nil {
			s.timer = time.AfterFunc(wait, s.deferred)
		}
		return nil
	}
	s.pending = nil
	s.last = time.Now()
	return s.store.PutCursor(s.channel, cur)
}

func (s *cursorSaver) deferred() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.timer = nil
	if err := s.writeLocked(); err != nil {
		s.err = err
	}
}

// flush writes the pending cursor now. Call it when the subscription
// returns, before the cursor is read or reset.
func (s *cursorSaver) flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	err := s.writeLocked()
	if s.err != nil {
		err, s.err = s.err, nil
	}
	return err
}

func (s *cursorSaver) writeLocked() error {
	if s.pending == nil {
		return nil
	}
	cur := s.pending
	s.pending = nil
	s.last = time.Now()
	return s.store.PutCursor(s.channel, cur)
}
