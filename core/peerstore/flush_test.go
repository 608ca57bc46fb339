package peerstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	p2ptest "github.com/libp2p/go-libp2p/core/test"

	"github.com/remora-p2p/remora/testenv"
)

// countingBackend is a MemoryBackend that records every Apply and fails
// them while err is set.
type countingBackend struct {
	*MemoryBackend
	mu      sync.Mutex
	err     error
	batches []batch // every Apply, failed ones included
}

type batch struct{ puts, deletes []string }

func newCounting() *countingBackend { return &countingBackend{MemoryBackend: NewMemoryBackend()} }

func (b *countingBackend) Apply(ctx context.Context, puts map[string][]byte, deletes []string) error {
	b.mu.Lock()
	b.batches = append(b.batches, batch{slices.Sorted(maps.Keys(puts)), slices.Sorted(slices.Values(deletes))})
	err := b.err
	b.mu.Unlock()
	if err != nil {
		return err
	}
	return b.MemoryBackend.Apply(ctx, puts, deletes)
}

func (b *countingBackend) fail(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.err = err
}

func (b *countingBackend) calls() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.batches)
}

func (b *countingBackend) last() batch {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.batches[len(b.batches)-1]
}

// fakeTimers is an Options.AfterFunc whose flushes run when the test fires
// them.
type fakeTimers struct {
	mu     sync.Mutex
	timers []*fakeTimer
}

type fakeTimer struct {
	ft      *fakeTimers
	d       time.Duration
	f       func()
	stopped bool
	fired   bool
}

func (ft *fakeTimers) afterFunc(d time.Duration, f func()) Timer {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	t := &fakeTimer{ft: ft, d: d, f: f}
	ft.timers = append(ft.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.ft.mu.Lock()
	defer t.ft.mu.Unlock()
	was := !t.stopped && !t.fired
	t.stopped = true
	return was
}

func (ft *fakeTimers) count() int {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	return len(ft.timers)
}

// fire runs the newest timer's flush as its goroutine would, unless it was
// stopped; it reports whether it ran.
func (ft *fakeTimers) fire(t *testing.T) bool {
	t.Helper()
	ft.mu.Lock()
	if len(ft.timers) == 0 {
		ft.mu.Unlock()
		t.Fatal("no flush scheduled")
	}
	tm := ft.timers[len(ft.timers)-1]
	run := !tm.stopped && !tm.fired
	tm.fired = true
	ft.mu.Unlock()
	if run {
		tm.f()
	}
	return run
}

// logRecords keeps the records logged through it.
type logRecords struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecords) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r)
	return nil
}
func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecords) WithGroup(string) slog.Handler      { return l }

func (l *logRecords) warnings() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.recs {
		if r.Level == slog.LevelWarn {
			n++
		}
	}
	return n
}

// records is every peer s holds, encoded as a flush writes it.
func records(t *testing.T, s *Store) map[string]string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for p, l := range s.peers {
		v, err := encodeRecord(p, l, s.uptime[p])
		if err != nil {
			t.Fatal(err)
		}
		out[string(p)] = string(v)
	}
	return out
}

// stored is every record in be.
func stored(t *testing.T, be Backend) map[string]string {
	t.Helper()
	out := map[string]string{}
	if err := be.Load(context.Background(), func(k, v []byte) error { out[string(k)] = string(v); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// reloaded is the records a new Store reads from be.
func reloaded(t *testing.T, be Backend) map[string]string {
	t.Helper()
	s, err := New(context.Background(), be, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return records(t, s)
}

func peers(t *testing.T, n int) []peer.ID {
	out := make([]peer.ID, n)
	for i := range out {
		out[i] = p2ptest.RandPeerIDFatal(t)
	}
	return out
}

func addrOf(i int) Addr {
	return Addr{Addr: mustAddr(fmt.Sprintf("/ip4/198.51.100.%d/udp/%d/quic-v1", i%250+1, 4000+i)), Kind: "public", Source: "pex"}
}

// TestFlushCoalesces: a burst of changes to many peers writes nothing until
// the flush, then one batch with every changed peer, which a new Store loads
// as it was in memory.
func TestFlushCoalesces(t *testing.T) {
	const n = 200
	tests := []struct {
		name  string
		burst func(s *Store, ps []peer.ID)
	}{
		{"adds", func(s *Store, ps []peer.ID) {
			for i, p := range ps {
				s.Add(p, []Addr{addrOf(i), addrOf(i + n)})
			}
		}},
		{"adds then outcomes and uptime", func(s *Store, ps []peer.ID) {
			for i, p := range ps {
				s.Add(p, []Addr{addrOf(i), addrOf(i + n)})
			}
			for i, p := range ps {
				s.Success(p, addrOf(i).Addr, time.Duration(i)*time.Millisecond)
				s.Failure(p, addrOf(i+n).Addr)
				s.AddUptime(p, time.Minute)
			}
		}},
		{"forgotten and added again", func(s *Store, ps []peer.ID) {
			for i, p := range ps {
				s.Add(p, []Addr{addrOf(i)})
				s.Forget(p)
				s.Add(p, []Addr{addrOf(i + n)})
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			clk := &fakeClock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
			be, ft := newCounting(), &fakeTimers{}
			s, err := New(ctx, be, Options{Clock: clk.now, AfterFunc: ft.afterFunc})
			if err != nil {
				t.Fatal(err)
			}
			ps := peers(t, n)
			tt.burst(s, ps)
			if got := be.calls(); got != 0 {
				t.Fatalf("%d backend writes before the flush, want none", got)
			}
			if got := len(s.Peers()); got != n {
				t.Fatalf("memory holds %d peers, want %d: changes must show at once", got, n)
			}
			if err := s.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if err := s.Flush(ctx); err != nil { // nothing left: no write
				t.Fatal(err)
			}
			if got := be.calls(); got != 1 {
				t.Fatalf("%d backend writes for the burst, want 1", got)
			}
			if b := be.last(); len(b.puts) != n || len(b.deletes) != 0 {
				t.Fatalf("batch of %d puts, %d deletes; want %d puts", len(b.puts), len(b.deletes), n)
			}
			want := records(t, s)
			if got := stored(t, be); !maps.Equal(got, want) {
				t.Fatalf("backend holds %d records unlike memory's %d", len(got), len(want))
			}
			if got := reloaded(t, be); !maps.Equal(got, want) {
				t.Fatalf("a new Store loaded %d records unlike the %d written", len(got), len(want))
			}
		})
	}
}

// TestFlushDelay: the first change schedules one flush FlushDelay later;
// further changes before it do not schedule more; when it runs it writes
// them all, and the next change schedules the next one.
func TestFlushDelay(t *testing.T) {
	tests := []struct {
		name  string
		delay time.Duration
		want  time.Duration
	}{
		{"default", 0, DefaultFlushDelay},
		{"set", 250 * time.Millisecond, 250 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			be, ft := newCounting(), &fakeTimers{}
			s, err := New(ctx, be, Options{FlushDelay: tt.delay, AfterFunc: ft.afterFunc})
			if err != nil {
				t.Fatal(err)
			}
			if ft.count() != 0 {
				t.Fatal("a flush scheduled with nothing to write")
			}
			ps := peers(t, 10)
			for i, p := range ps {
				s.Add(p, []Addr{addrOf(i)})
				s.Success(p, addrOf(i).Addr, time.Millisecond)
			}
			s.Forget(ps[0])
			if got := ft.count(); got != 1 {
				t.Fatalf("%d flushes scheduled for one burst, want 1", got)
			}
			if d := ft.timers[0].d; d != tt.want {
				t.Fatalf("flush scheduled after %v, want %v", d, tt.want)
			}
			if !ft.fire(t) {
				t.Fatal("the scheduled flush was stopped")
			}
			if got := be.calls(); got != 1 {
				t.Fatalf("%d backend writes after the scheduled flush, want 1", got)
			}
			if got, want := reloaded(t, be), records(t, s); !maps.Equal(got, want) || len(got) != len(ps)-1 {
				t.Fatalf("reloaded %d records, want the %d in memory", len(got), len(want))
			}
			s.AddUptime(ps[1], time.Second)
			if got := ft.count(); got != 2 {
				t.Fatalf("%d flushes scheduled after a change following a flush, want 2", got)
			}
			// An explicit Flush writes it and stops the scheduled one.
			if err := s.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if ft.fire(t) {
				t.Fatal("the scheduled flush still ran after Flush wrote its changes")
			}
			if got := be.calls(); got != 2 {
				t.Fatalf("%d backend writes, want 2", got)
			}
		})
	}
}

// TestFlushDelayRealTimer: with the default AfterFunc the changes reach the
// backend on their own.
func TestFlushDelayRealTimer(t *testing.T) {
	ctx := context.Background()
	be := newCounting()
	s, err := New(ctx, be, Options{FlushDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	p := p2ptest.RandPeerIDFatal(t)
	s.Add(p, []Addr{addrOf(1)})
	testenv.WaitFor(t, "the scheduled flush", 10*time.Second, func() bool { return len(stored(t, be)) == 1 })
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := be.calls(); got != 1 {
		t.Fatalf("%d backend writes, want 1", got)
	}
}

// TestFlushFailureKeepsChanges: a failed flush is returned and logged and
// loses nothing: once the backend works again, the next flush writes every
// change, those made in between too, deletions included.
func TestFlushFailureKeepsChanges(t *testing.T) {
	tests := []struct {
		name  string
		flush func(t *testing.T, s *Store, ft *fakeTimers) error
	}{
		{"Flush", func(t *testing.T, s *Store, _ *fakeTimers) error { return s.Flush(context.Background()) }},
		{"Close", func(t *testing.T, s *Store, _ *fakeTimers) error { return s.Close(context.Background()) }},
		{"scheduled", func(t *testing.T, s *Store, ft *fakeTimers) error {
			ft.fire(t)
			return nil // logged only: nobody to return it to
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			be, ft, logs := newCounting(), &fakeTimers{}, &logRecords{}
			s, err := New(ctx, be, Options{AfterFunc: ft.afterFunc, Logger: slog.New(logs)})
			if err != nil {
				t.Fatal(err)
			}
			ps := peers(t, 4)
			s.Add(ps[0], []Addr{addrOf(0)})
			if err := s.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			disk := errors.New("disk full")
			be.fail(disk)
			s.Add(ps[1], []Addr{addrOf(1)})
			s.Add(ps[2], []Addr{addrOf(2)})
			s.Forget(ps[0])
			err = tt.flush(t, s, ft)
			if tt.name != "scheduled" && !errors.Is(err, disk) {
				t.Fatalf("err = %v, want the backend's", err)
			}
			if got := be.calls(); got != 2 {
				t.Fatalf("%d backend writes, want 2 (one failed)", got)
			}
			if logs.warnings() != 1 {
				t.Fatalf("%d warnings logged, want 1 for the failed flush", logs.warnings())
			}
			s.Add(ps[3], []Addr{addrOf(3)}) // a change while the disk is down
			be.fail(nil)
			if err := s.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if b := be.last(); len(b.puts) != 3 || !slices.Equal(b.deletes, []string{string(ps[0])}) {
				t.Fatalf("batch after recovery: %d puts, deletes %q; want 3 puts and ps[0] deleted", len(b.puts), b.deletes)
			}
			if got, want := reloaded(t, be), records(t, s); !maps.Equal(got, want) || len(got) != 3 {
				t.Fatalf("reloaded %d records, want the %d in memory", len(got), len(want))
			}
		})
	}
}

// TestDeletionsFlushed: Forget, Retain and Prune reach the backend as
// deletions, and a reloaded Store does not see the peer.
func TestDeletionsFlushed(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		expiry  time.Time     // of the dropped peer's address
		advance time.Duration // of the clock before the drop
		drop    func(s *Store, p peer.ID)
	}{
		{"Forget", time.Time{}, 0, func(s *Store, p peer.ID) { s.Forget(p) }},
		{"Retain", time.Time{}, 0, func(s *Store, p peer.ID) {
			s.Retain(func(q peer.ID) bool { return q != p })
		}},
		{"Prune by age", time.Time{}, 2 * time.Hour, func(s *Store, _ peer.ID) { s.Prune(time.Hour) }},
		{"Prune expired", t0.Add(time.Minute), 2 * time.Minute, func(s *Store, _ peer.ID) { s.Prune(0) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			clk := &fakeClock{t: t0}
			be, ft := newCounting(), &fakeTimers{}
			s, err := New(ctx, be, Options{Clock: clk.now, AfterFunc: ft.afterFunc})
			if err != nil {
				t.Fatal(err)
			}
			gone, kept := p2ptest.RandPeerIDFatal(t), p2ptest.RandPeerIDFatal(t)
			a := addrOf(1)
			a.Expires = tt.expiry
			s.Add(gone, []Addr{a})
			s.Add(kept, []Addr{addrOf(2)})
			if err := s.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			clk.t = clk.t.Add(tt.advance)
			s.Add(kept, []Addr{addrOf(2)}) // announced again: the age limit keeps it
			tt.drop(s, gone)
			if err := s.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if b := be.last(); !slices.Equal(b.deletes, []string{string(gone)}) {
				t.Fatalf("deletions %q, want the dropped peer", b.deletes)
			}
			got := reloaded(t, be)
			if _, ok := got[string(gone)]; ok || len(got) != 1 {
				t.Fatalf("reloaded %d records, the dropped peer among them: %v", len(got), ok)
			}
		})
	}
}

// TestForgetUnloadedRecord: a record New skipped (it does not decode) is
// still deleted when its peer is forgotten.
func TestForgetUnloadedRecord(t *testing.T) {
	ctx := context.Background()
	be := newCounting()
	p := p2ptest.RandPeerIDFatal(t)
	be.MemoryBackend.Apply(ctx, map[string][]byte{string(p): []byte("{not json")}, nil)
	s, err := New(ctx, be, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Forget(p)
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := stored(t, be); len(got) != 0 {
		t.Fatalf("backend still holds %d records", len(got))
	}
}

// TestCloseStopsScheduling: Close writes what is pending; later changes
// schedule nothing and a flush already under way when Close ran writes
// nothing after it (the backend may be closed by then), while an explicit
// Flush still writes.
func TestCloseStopsScheduling(t *testing.T) {
	ctx := context.Background()
	be, ft := newCounting(), &fakeTimers{}
	s, err := New(ctx, be, Options{AfterFunc: ft.afterFunc})
	if err != nil {
		t.Fatal(err)
	}
	ps := peers(t, 2)
	s.Add(ps[0], []Addr{addrOf(0)})
	if ft.count() != 1 {
		t.Fatalf("%d flushes scheduled, want 1", ft.count())
	}
	stale := ft.timers[0].f
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := len(stored(t, be)); got != 1 {
		t.Fatalf("Close left %d records stored, want 1", got)
	}
	s.Add(ps[1], []Addr{addrOf(1)})
	if got := ft.count(); got != 1 {
		t.Fatalf("%d flushes scheduled, want none after Close", got-1)
	}
	stale() // as if its timer fired just before Close stopped it
	if got := be.calls(); got != 1 {
		t.Fatalf("%d backend writes, want only Close's", got)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := len(stored(t, be)); got != 2 {
		t.Fatalf("%d records stored after Flush, want 2", got)
	}
}

// blockingBackend holds Apply until release is closed.
type blockingBackend struct {
	*MemoryBackend
	entered chan struct{}
	release chan struct{}
}

func (b *blockingBackend) Apply(ctx context.Context, puts map[string][]byte, deletes []string) error {
	close(b.entered)
	<-b.release
	return b.MemoryBackend.Apply(ctx, puts, deletes)
}

// TestFlushDoesNotBlockChanges: while the backend writes, the Store reads
// and changes as usual; what changed meanwhile goes with the next flush.
func TestFlushDoesNotBlockChanges(t *testing.T) {
	ctx := context.Background()
	be := &blockingBackend{MemoryBackend: NewMemoryBackend(), entered: make(chan struct{}), release: make(chan struct{})}
	ft := &fakeTimers{}
	s, err := New(ctx, be, Options{AfterFunc: ft.afterFunc})
	if err != nil {
		t.Fatal(err)
	}
	ps := peers(t, 2)
	s.Add(ps[0], []Addr{addrOf(0)})
	flushed := make(chan error, 1)
	go func() { flushed <- s.Flush(ctx) }()
	<-be.entered
	changed := make(chan struct{})
	go func() {
		s.Add(ps[1], []Addr{addrOf(1)})
		s.Success(ps[0], addrOf(0).Addr, time.Millisecond)
		close(changed)
	}()
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		close(be.release)
		t.Fatal("changes waited for the backend's write")
	}
	close(be.release)
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	if got := len(stored(t, be.MemoryBackend)); got != 1 {
		t.Fatalf("%d records stored by the first flush, want 1", got)
	}
	be.entered, be.release = make(chan struct{}), make(chan struct{})
	close(be.release)
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := reloaded(t, be.MemoryBackend), records(t, s); !maps.Equal(got, want) || len(got) != 2 {
		t.Fatalf("reloaded %d records, want the %d in memory", len(got), len(want))
	}
}

// TestConcurrentChangesAndFlushes: changes and flushes racing end with the
// backend holding what memory holds (flushes write one at a time, so an
// older snapshot never lands after a newer one).
func TestConcurrentChangesAndFlushes(t *testing.T) {
	ctx := context.Background()
	be := newCounting()
	s, err := New(ctx, be, Options{FlushDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ps := peers(t, 8)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 200 {
				p := ps[(w+i)%len(ps)]
				s.Add(p, []Addr{addrOf(i % 40)})
				s.Success(p, addrOf(i%40).Addr, time.Duration(i))
				s.AddUptime(p, time.Millisecond)
				if i%50 == 49 {
					s.Forget(p)
				}
			}
		})
		wg.Go(func() {
			for range 50 {
				if err := s.Flush(ctx); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := stored(t, be), records(t, s); !maps.Equal(got, want) {
		t.Fatalf("backend holds %d records unlike memory's %d", len(got), len(want))
	}
}
