package envelope

import (
	"bytes"
	"testing"
	"time"
)

func TestReassembler(t *testing.T) {
	type add struct {
		key          string
		index, count int
		data         string
		whole        string // expected result when it completes
		err          error
	}
	tests := []struct {
		name    string
		lim     Limits
		adds    []add
		pending int
		dropped int
	}{
		{"in order", Limits{}, []add{
			{"a", 0, 3, "ab", "", nil}, {"a", 1, 3, "cd", "", nil}, {"a", 2, 3, "e", "abcde", nil},
		}, 0, 0},
		{"reverse order", Limits{}, []add{
			{"a", 2, 3, "e", "", nil}, {"a", 1, 3, "cd", "", nil}, {"a", 0, 3, "ab", "abcde", nil},
		}, 0, 0},
		{"single fragment passes through", Limits{}, []add{{"a", 0, 1, "xyz", "xyz", nil}}, 0, 0},
		{"duplicate ignored, first wins", Limits{}, []add{
			{"a", 0, 2, "ab", "", nil}, {"a", 0, 2, "XX", "", nil}, {"a", 1, 2, "cd", "abcd", nil},
		}, 0, 0},
		{"interleaved messages", Limits{}, []add{
			{"a", 0, 2, "a0", "", nil}, {"b", 1, 2, "b1", "", nil}, {"b", 0, 2, "b0", "b0b1", nil}, {"a", 1, 2, "a1", "a0a1", nil},
		}, 0, 0},
		{"index out of range", Limits{}, []add{{"a", 3, 3, "x", "", ErrMalformed}}, 0, 0},
		{"negative index", Limits{}, []add{{"a", -1, 3, "x", "", ErrMalformed}}, 0, 0},
		{"zero count", Limits{}, []add{{"a", 0, 0, "x", "", ErrMalformed}}, 0, 0},
		{"count changes", Limits{}, []add{{"a", 0, 3, "x", "", nil}, {"a", 1, 4, "y", "", ErrMalformed}}, 0, 1},
		{"too many fragments", Limits{MaxFragments: 4}, []add{{"a", 0, 5, "x", "", ErrTooLarge}}, 0, 0},
		{"message too large", Limits{MaxMessageBytes: 5}, []add{
			{"a", 0, 3, "abc", "", nil}, {"a", 1, 3, "def", "", ErrTooLarge},
		}, 0, 1},
		{"pending count limit evicts the oldest", Limits{MaxPending: 2}, []add{
			{"a", 0, 2, "a0", "", nil}, {"b", 0, 2, "b0", "", nil}, {"c", 0, 2, "c0", "", nil},
			{"a", 1, 2, "a1", "", nil},     // a was evicted: this starts it again
			{"c", 1, 2, "c1", "c0c1", nil}, // b was evicted to make room for a again
		}, 1, 2},
		{"pending bytes limit evicts the oldest", Limits{MaxPendingBytes: 10}, []add{
			{"a", 0, 2, "aaaaaa", "", nil}, {"b", 0, 2, "bbbbbb", "", nil}, {"b", 1, 2, "b", "bbbbbbb", nil},
		}, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReassembler(tt.lim, nil)
			for i, a := range tt.adds {
				whole, done, err := r.Add(a.key, a.index, a.count, []byte(a.data))
				if !errorsIs(err, a.err) {
					t.Fatalf("add %d: err = %v, want %v", i, err, a.err)
				}
				if done != (a.whole != "") || string(whole) != a.whole {
					t.Fatalf("add %d: whole = %q done = %v, want %q", i, whole, done, a.whole)
				}
			}
			if n, _ := r.Pending(); n != tt.pending {
				t.Fatalf("pending = %d, want %d", n, tt.pending)
			}
			if r.Dropped() != tt.dropped {
				t.Fatalf("dropped = %d, want %d", r.Dropped(), tt.dropped)
			}
		})
	}
}

func TestReassemblerExpiry(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := NewReassembler(Limits{Hold: time.Hour}, func() time.Time { return now })
	if _, done, err := r.Add("a", 0, 2, []byte("a0")); done || err != nil {
		t.Fatal(done, err)
	}
	now = now.Add(time.Hour + time.Second)
	// The late fragment finds nothing: the first one expired.
	if _, done, err := r.Add("a", 1, 2, []byte("a1")); done || err != nil {
		t.Fatal(done, err)
	}
	if r.Dropped() != 1 {
		t.Fatalf("dropped = %d, want 1", r.Dropped())
	}
	if n, b := r.Pending(); n != 1 || b != 2 {
		t.Fatalf("pending = %d messages %d bytes, want 1 and 2", n, b)
	}
}

func TestReassemblerCopiesInput(t *testing.T) {
	r := NewReassembler(Limits{}, nil)
	buf := []byte("a0")
	r.Add("a", 0, 2, buf)
	buf[0] = 'X'
	whole, done, _ := r.Add("a", 1, 2, []byte("a1"))
	if !done || !bytes.Equal(whole, []byte("a0a1")) {
		t.Fatalf("whole = %q", whole)
	}
}

// TestFragmentInjection: a member who holds the sender's chain key injects
// a fake fragment into another member's message. The reassembled message
// fails the signature (ErrForged); when the genuine fragments come again
// (at-least-once delivery resends), the message opens.
func TestFragmentInjection(t *testing.T) {
	w := newWorld(t)
	key := w.alice.msgKey(w.cur.Epoch)
	route := Route{Channel: testChannel, MaxSize: 300}
	body := seeded("long", 500)
	sealed, err := (&Sealer{}).Broadcast(w.cur, w.alice.signer(), key, w.draft(body), route)
	if err != nil {
		t.Fatal(err)
	}
	if len(sealed.Envelopes) < 3 {
		t.Fatalf("%d fragments", len(sealed.Envelopes))
	}
	// Carol rewrites fragment 1's slice.
	pt := broadcastPlaintext(t, key, sealed.Envelopes[1])
	pt[FrameSize+3] ^= 0xff
	fake := rebroadcast(t, key, sealed.Envelopes[1], pt)

	o := w.opener(w.bob, OpenOptions{})
	last := len(sealed.Envelopes) - 1
	for i, env := range sealed.Envelopes {
		if i == 1 {
			env = fake
		}
		_, err := o.Open(testChannel, env)
		if i < last && !isErr(err, ErrPending) || i == last && !isErr(err, ErrForged) {
			t.Fatalf("fragment %d: err = %v", i, err)
		}
	}
	if n, _ := o.Reassembler().Pending(); n != 0 {
		t.Fatalf("%d messages still pending after the failed one", n)
	}
	var m *Message
	for _, env := range sealed.Envelopes {
		m, err = o.Open(testChannel, env)
	}
	if err != nil {
		t.Fatalf("resent genuine fragments: %v", err)
	}
	mustEqualBody(t, m, body)
}

// TestFragmentsPerChannel: the same message sealed for two channels of
// different sizes is sliced differently; its fragments do not mix.
func TestFragmentsPerChannel(t *testing.T) {
	w := newWorld(t)
	key := w.alice.msgKey(w.cur.Epoch)
	d := w.draft(seeded("two channels", 600))
	a, err := (&Sealer{}).Broadcast(w.cur, w.alice.signer(), key, d, Route{Channel: "a", MaxSize: 400})
	if err != nil {
		t.Fatal(err)
	}
	d.ID = a.ID
	b, err := (&Sealer{}).Broadcast(w.cur, w.alice.signer(), key, d, Route{Channel: "b", MaxSize: 420})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Envelopes) != len(b.Envelopes) {
		t.Fatalf("test needs equal fragment counts, got %d and %d", len(a.Envelopes), len(b.Envelopes))
	}
	o := w.opener(w.bob, OpenOptions{})
	if _, err := o.Open("a", a.Envelopes[0]); !isErr(err, ErrPending) {
		t.Fatal(err)
	}
	for i := 1; i < len(b.Envelopes); i++ {
		if _, err := o.Open("b", b.Envelopes[i]); !isErr(err, ErrPending) {
			t.Fatal(err)
		}
	}
	m, err := o.Open("b", b.Envelopes[0])
	if err != nil {
		t.Fatal(err)
	}
	mustEqualBody(t, m, d.Body)
}

func TestSealLimits(t *testing.T) {
	w := newWorld(t)
	key := w.alice.msgKey(w.cur.Epoch)
	s := &Sealer{MaxFragments: 4}
	if _, err := s.Broadcast(w.cur, w.alice.signer(), key, w.draft(make([]byte, 2000)), Route{Channel: "c", MaxSize: 300}); !errorsIs(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if _, err := s.Broadcast(w.cur, w.alice.signer(), key, w.draft(nil), Route{Channel: "c", MaxSize: Overhead(SuiteBroadcast) + 15}); !errorsIs(err, ErrChannelTooSmall) {
		t.Fatalf("err = %v, want ErrChannelTooSmall", err)
	}
	pq := Recipient{ID: w.bob.id, BoxKey: w.bob.pqBox.PublicKey()}
	if _, err := s.Direct(w.cur, w.alice.signer(), pq, w.draft(nil), Route{Channel: "c", MaxSize: 371}); !errorsIs(err, ErrChannelTooSmall) {
		t.Fatalf("hybrid suite on a Mastodon-sized channel: err = %v, want ErrChannelTooSmall", err)
	}
	d := w.draft(nil)
	d.Expiry = d.Timestamp
	if _, err := s.Broadcast(w.cur, w.alice.signer(), key, d, Route{Channel: "c", MaxSize: 1000}); err == nil {
		t.Fatal("expiry not after timestamp accepted")
	}
	if _, err := s.Broadcast(w.cur, w.alice.signer(), key[:16], w.draft(nil), Route{Channel: "c", MaxSize: 1000}); err == nil {
		t.Fatal("16-byte message key accepted")
	}
}

func TestPaddedSize(t *testing.T) {
	tests := []struct{ n, max, want int }{
		{1, 1 << 20, 256}, {256, 1 << 20, 256}, {257, 1 << 20, 512}, {1000, 1 << 20, 1024},
		{64 << 10, 1 << 20, 64 << 10}, {64<<10 + 1, 1 << 20, 128 << 10}, {200 << 10, 1 << 20, 256 << 10},
		{300, 371, 371}, {200, 371, 256}, {371, 371, 371},
	}
	for _, tt := range tests {
		if got := PaddedSize(tt.n, tt.max); got != tt.want {
			t.Errorf("PaddedSize(%d, %d) = %d, want %d", tt.n, tt.max, got, tt.want)
		}
	}
}
