package envelope

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestWindow(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	type step struct {
		advance time.Duration
		key     string
		until   time.Duration // from now
		seen    bool
	}
	tests := []struct {
		name  string
		max   int
		steps []step
		len   int
	}{
		{"first time not seen, second seen", 0, []step{
			{0, "a", time.Hour, false}, {0, "a", time.Hour, true}, {59 * time.Minute, "a", time.Hour, true},
		}, 1},
		{"forgotten after until", 0, []step{
			{0, "a", time.Hour, false}, {time.Hour, "a", time.Hour, false}, {0, "a", time.Hour, true},
		}, 1},
		{"until already past is not stored", 0, []step{
			{0, "a", 0, false}, {0, "a", time.Hour, false}, {0, "a", time.Hour, true},
		}, 1},
		{"full: the entry closest to its end goes first", 2, []step{
			{0, "long", 3 * time.Hour, false}, {0, "short", time.Hour, false}, {0, "new", 2 * time.Hour, false},
			{0, "long", time.Hour, true}, {0, "new", time.Hour, true}, {0, "short", time.Hour, false},
		}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			w := NewWindow(tt.max, clock)
			for i, s := range tt.steps {
				now = now.Add(s.advance)
				seen, err := w.Remember([]byte(s.key), now.Add(s.until))
				if err != nil || seen != s.seen {
					t.Fatalf("step %d (%s): seen = %v, err = %v, want %v", i, s.key, seen, err, s.seen)
				}
			}
			if w.Len() != tt.len {
				t.Fatalf("Len = %d, want %d", w.Len(), tt.len)
			}
		})
	}
}

// TestDedupeUntilClamped: a far expiry does not make receivers remember a
// message longer than the maximum age allows it to be accepted.
func TestDedupeUntilClamped(t *testing.T) {
	w := newWorld(t)
	d := w.draft([]byte("forever"))
	d.Expiry = w.now.Add(10 * 365 * 24 * time.Hour)
	sealed, err := (&Sealer{}).Broadcast(w.cur, w.alice.signer(), w.alice.msgKey(w.cur.Epoch), d, Route{Channel: testChannel, MaxSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	o := w.opener(w.bob, OpenOptions{MaxAge: 48 * time.Hour, MaxSkew: time.Minute})
	m, err := o.Open(testChannel, sealed.Envelopes[0])
	if err != nil {
		t.Fatal(err)
	}
	if want := w.now.Add(48*time.Hour + time.Minute); !m.DedupeUntil.Equal(want) {
		t.Fatalf("DedupeUntil = %v, want timestamp + max age + skew = %v", m.DedupeUntil, want)
	}
	w.now = m.DedupeUntil.Add(time.Millisecond)
	if _, err := o.Open(testChannel, sealed.Envelopes[0]); !isErr(err, ErrExpired) {
		t.Fatalf("after DedupeUntil: err = %v, want ErrExpired", err)
	}
}

// TestOpenConcurrent opens fragmented and whole messages from several
// goroutines through one Opener (run with -race).
func TestOpenConcurrent(t *testing.T) {
	w := newWorld(t)
	o := w.opener(w.bob, OpenOptions{Replay: NewWindow(0, w.clock())})
	route := Route{Channel: testChannel, MaxSize: 300}
	const n = 8
	var envs [n][][]byte
	for i := range n {
		var sealed *Sealed
		var err error
		body := seeded(fmt.Sprint("concurrent ", i), 100+100*i)
		if i%2 == 0 {
			sealed, err = (&Sealer{}).Broadcast(w.cur, w.alice.signer(), w.alice.msgKey(w.cur.Epoch), w.draft(body), route)
		} else {
			sealed, err = (&Sealer{}).Direct(w.cur, w.carol.signer(), w.bob.recipient(), w.draft(body), route)
		}
		if err != nil {
			t.Fatal(err)
		}
		envs[i] = sealed.Envelopes
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	opened := 0
	for i := range n {
		for _, env := range envs[i] {
			wg.Go(func() {
				m, err := o.Open(testChannel, env)
				if err != nil && !isErr(err, ErrPending) {
					t.Errorf("message %d: %v", i, err)
				}
				if m != nil {
					mu.Lock()
					opened++
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	if opened != n {
		t.Fatalf("%d messages opened, want %d", opened, n)
	}
	if p, b := o.Reassembler().Pending(); p != 0 || b != 0 {
		t.Fatalf("left pending: %d messages, %d bytes", p, b)
	}
}
