package envelope

import (
	"container/heap"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// DedupeKey returns the replay/dedupe key of a message:
// u8(len(sender)) ‖ sender peer ID ‖ message ID. Stores persist it with the
// message's DedupeUntil.
func DedupeKey(sender peer.ID, id MessageID) []byte {
	k := make([]byte, 0, 1+len(sender)+len(id))
	k = append(k, byte(len(sender)))
	k = append(k, sender...)
	return append(k, id[:]...)
}

// ReplayStore remembers accepted messages. The node's store implements it
// durably (dedupe in the same transaction as the inbox insert); Window is
// the in-memory implementation.
type ReplayStore interface {
	// Remember records key until the given time and reports whether it was
	// already recorded (and not yet past its own until).
	Remember(key []byte, until time.Time) (seen bool, err error)
}

// Window is a bounded in-memory ReplayStore with an injected clock. When
// full it forgets the entries closest to their end first; a durable store
// behind it must then catch what it forgot.
type Window struct {
	mu      sync.Mutex
	now     func() time.Time
	max     int
	entries map[string]time.Time
	byTime  untilHeap
}

// NewWindow returns a Window holding at most max entries (max ≤ 0 means
// 1<<20); now nil means time.Now.
func NewWindow(max int, now func() time.Time) *Window {
	if max <= 0 {
		max = 1 << 20
	}
	if now == nil {
		now = time.Now
	}
	return &Window{now: now, max: max, entries: make(map[string]time.Time)}
}

// Remember implements ReplayStore.
func (w *Window) Remember(key []byte, until time.Time) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	w.expire(now)
	k := string(key)
	if u, ok := w.entries[k]; ok && u.After(now) {
		return true, nil
	}
	if !until.After(now) {
		return false, nil
	}
	for len(w.entries) >= w.max && len(w.byTime) > 0 {
		w.pop()
	}
	w.entries[k] = until
	heap.Push(&w.byTime, untilEntry{key: k, until: until})
	return false, nil
}

// Len returns the number of entries remembered and not yet expired.
func (w *Window) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.expire(w.now())
	return len(w.entries)
}

func (w *Window) expire(now time.Time) {
	for len(w.byTime) > 0 && !w.byTime[0].until.After(now) {
		w.pop()
	}
}

func (w *Window) pop() {
	e := heap.Pop(&w.byTime).(untilEntry)
	if u, ok := w.entries[e.key]; ok && u.Equal(e.until) {
		delete(w.entries, e.key)
	}
}

type untilEntry struct {
	key   string
	until time.Time
}

type untilHeap []untilEntry

func (h untilHeap) Len() int           { return len(h) }
func (h untilHeap) Less(i, j int) bool { return h[i].until.Before(h[j].until) }
func (h untilHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *untilHeap) Push(x any)        { *h = append(*h, x.(untilEntry)) }
func (h *untilHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
