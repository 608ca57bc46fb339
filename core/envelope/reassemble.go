package envelope

import (
	"fmt"
	"sync"
	"time"
)

// Limits bound a Reassembler. Zero fields take the defaults.
type Limits struct {
	// MaxFragments per message (default DefaultMaxFragments).
	MaxFragments int
	// MaxMessageBytes is the largest reassembled signed message (default 4 MiB).
	MaxMessageBytes int
	// MaxPending is the number of incomplete messages held (default 1024);
	// past it the oldest is dropped.
	MaxPending int
	// MaxPendingBytes is the total held over incomplete messages (default
	// 32 MiB); past it the oldest are dropped.
	MaxPendingBytes int
	// Hold is how long an incomplete message is kept after its first
	// fragment arrived (default 72 h: slow poll channels spread fragments).
	Hold time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.MaxFragments <= 0 {
		l.MaxFragments = DefaultMaxFragments
	}
	if l.MaxMessageBytes <= 0 {
		l.MaxMessageBytes = 4 << 20
	}
	if l.MaxPending <= 0 {
		l.MaxPending = 1024
	}
	if l.MaxPendingBytes <= 0 {
		l.MaxPendingBytes = 32 << 20
	}
	if l.Hold <= 0 {
		l.Hold = 72 * time.Hour
	}
	return l
}

// Reassembler joins fragments into messages within fixed bounds. Pending
// state is in memory only: a node that must not lose fragments across a
// restart keeps the raw envelopes of pending fragments and feeds them to
// Open again at start (duplicates are ignored). It is safe for concurrent use.
type Reassembler struct {
	mu      sync.Mutex
	lim     Limits
	now     func() time.Time
	pending map[string]*partial
	bytes   int
	seq     uint64
	// Dropped counts incomplete messages dropped by expiry or limits.
	dropped int
}

type partial struct {
	count int
	got   int
	size  int
	parts [][]byte
	have  []bool
	first time.Time
	seq   uint64 // arrival order, for eviction
}

// NewReassembler returns a Reassembler; now nil means time.Now.
func NewReassembler(lim Limits, now func() time.Time) *Reassembler {
	if now == nil {
		now = time.Now
	}
	return &Reassembler{lim: lim.withDefaults(), now: now, pending: make(map[string]*partial)}
}

// Add stores fragment index of count for the message named key. It returns
// the whole message (the slices joined in index order) and true when this
// fragment completed it, nil and false while fragments are missing. A
// duplicate index is ignored (the first copy wins). Errors wrap
// ErrMalformed (bad index or count, a count differing from earlier
// fragments) or ErrTooLarge (over MaxFragments or MaxMessageBytes); the
// message's pending state is dropped then.
func (r *Reassembler) Add(key string, index, count int, data []byte) ([]byte, bool, error) {
	if count < 1 || index < 0 || index >= count {
		return nil, false, fmt.Errorf("%w: fragment %d of %d", ErrMalformed, index, count)
	}
	if count > r.lim.MaxFragments {
		return nil, false, fmt.Errorf("%w: %d fragments, limit %d", ErrTooLarge, count, r.lim.MaxFragments)
	}
	if len(data) > r.lim.MaxMessageBytes {
		return nil, false, fmt.Errorf("%w: fragment of %d bytes, limit %d", ErrTooLarge, len(data), r.lim.MaxMessageBytes)
	}
	if count == 1 {
		return append([]byte(nil), data...), true, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	r.expire(now)

	p := r.pending[key]
	if p == nil {
		r.seq++
		p = &partial{count: count, parts: make([][]byte, count), have: make([]bool, count), first: now, seq: r.seq}
		r.pending[key] = p
	}
	if p.count != count {
		r.drop(key, p)
		return nil, false, fmt.Errorf("%w: fragment says %d fragments, earlier ones said %d", ErrMalformed, count, p.count)
	}
	if p.have[index] {
		return nil, false, nil
	}
	if p.size+len(data) > r.lim.MaxMessageBytes {
		r.drop(key, p)
		return nil, false, fmt.Errorf("%w: message exceeds %d bytes", ErrTooLarge, r.lim.MaxMessageBytes)
	}
	p.parts[index] = append([]byte(nil), data...)
	p.have[index] = true
	p.got++
	p.size += len(data)
	r.bytes += len(data)

	if p.got == p.count {
		whole := make([]byte, 0, p.size)
		for _, part := range p.parts {
			whole = append(whole, part...)
		}
		r.bytes -= p.size
		delete(r.pending, key)
		return whole, true, nil
	}
	for len(r.pending) > r.lim.MaxPending || r.bytes > r.lim.MaxPendingBytes {
		r.evictOldest()
	}
	return nil, false, nil
}

// Pending returns the number of incomplete messages held and their bytes.
func (r *Reassembler) Pending() (messages, bytes int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending), r.bytes
}

// Dropped returns how many incomplete messages were dropped (expired,
// evicted by the limits, or inconsistent).
func (r *Reassembler) Dropped() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dropped
}

func (r *Reassembler) drop(key string, p *partial) {
	r.bytes -= p.size
	delete(r.pending, key)
	r.dropped++
}

func (r *Reassembler) expire(now time.Time) {
	for k, p := range r.pending {
		if now.Sub(p.first) > r.lim.Hold {
			r.drop(k, p)
		}
	}
}

func (r *Reassembler) evictOldest() {
	var (
		oldKey string
		old    *partial
	)
	for k, p := range r.pending {
		if old == nil || p.seq < old.seq {
			oldKey, old = k, p
		}
	}
	if old != nil {
		r.drop(oldKey, old)
	}
}
