package channeltest

import (
	"context"
	"errors"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/goleak"

	"github.com/remora-p2p/remora/sdk"
)

// The cases below treat the channel as hostile ground (issue #20): what
// a member, a sync peer or a server puts where items go, and a server that
// stalls or trickles. Each measures the adapter's memory while it reads
// (the heap in-process, the resident memory of the adapter process as a
// subprocess) and holds it under memCeiling above where it started (under
// oversizedBytes in Oversized, twice that for resident memory),
// and each ends with no goroutine of the case left. They plant items
// through the harness's InsertBackdated hook, the one way every harness
// reaches past the adapter into the backend.
func init() {
	cases = append(cases,
		kase{"Oversized", testOversized},
		kase{"JunkFlood", testJunkFlood},
		kase{"StallAndTrickle", testStallAndTrickle},
	)
}

// memCeiling is the most an adapter's memory may grow by while it reads
// what a hostile channel holds: issue #20's bound for a whole daemon.
const memCeiling = 64 << 20

// oversizedBytes caps the size of the oversized item the kit plants: 256
// times MaxPayload (an adapter of a federated service may accept items
// above its own MaxPayload from members on other servers, not that far),
// at most this, small enough for a mail server or a forge to take.
const oversizedBytes = 8 << 20

// junkItems is how many items JunkFlood plants.
const junkItems = 100

// memWatch samples the adapter's memory until the returned function is
// called, which returns the peak growth over the start: the resident set
// of its process in subprocess mode, else this process's heap
// (HeapGrowth).
func (e *env) memWatch() func() growth {
	if s, ok := e.b.(*subprocess); ok && s.c != nil {
		if _, err := s.c.Memory(); err == nil {
			stop := peakGrowth(func() int64 { n, _ := s.c.Memory(); return n }, 5*time.Millisecond)
			return func() growth { return growth{stop(), "the adapter process's resident memory", true} }
		}
	}
	stop := HeapGrowth()
	return func() growth { return growth{stop(), "the heap", false} }
}

// growth is what memWatch measured.
type growth struct {
	bytes int64
	what  string
	rss   bool // a process's resident memory, not the heap
}

// peakGrowth samples read every interval until the returned function is
// called, which returns the peak over the first sample (0 if none was
// higher).
func peakGrowth(read func() int64, interval time.Duration) (stop func() int64) {
	base := read()
	var peak atomic.Int64
	peak.Store(base)
	done, ended := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ended)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if v := read(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() int64 {
		close(done)
		<-ended
		return max(peak.Load()-base, 0)
	}
}

// HeapGrowth watches this process's heap until the returned function is
// called, which returns the peak growth over the start. It counts every
// object not yet freed, garbage too, so that a buffer read whole and
// dropped before the next collection still counts (the live heap, marked
// at each collection, would miss it); so that other garbage does not, the
// watch starts from a collection and the collector runs at
// watchGCPercent while any watch is on. It starts after two collections,
// which empty every sync.Pool (a pool keeps its buffers through one): a
// buffer pooled by an earlier read in this process (the publisher's, in
// the kit, where both members share it) would otherwise be reused
// unseen, and the figure would miss a copy a fresh adapter process makes.
// Adapter tests use it to bound what a read costs.
func HeapGrowth() (stop func() int64) {
	gcWatch.Lock()
	if gcWatch.n == 0 {
		gcWatch.old = debug.SetGCPercent(watchGCPercent)
	}
	gcWatch.n++
	gcWatch.Unlock()
	runtime.GC()
	runtime.GC()
	peak := peakGrowth(heapObjects, time.Millisecond)
	return func() int64 {
		grew := peak()
		gcWatch.Lock()
		if gcWatch.n--; gcWatch.n == 0 {
			debug.SetGCPercent(gcWatch.old)
		}
		gcWatch.Unlock()
		return grew
	}
}

// watchGCPercent is GOGC while HeapGrowth watches: garbage stays under a
// tenth of the heap.
const watchGCPercent = 10

var gcWatch struct {
	sync.Mutex
	n   int // watches on
	old int // GOGC before the first
}

// heapObjects is the memory held by heap objects, live or not yet freed.
func heapObjects() int64 {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	return int64(sample[0].Value.Uint64())
}

// checkMem fails the case if g is over limit, and logs it.
func (e *env) checkMem(g growth, while string, limit int64) {
	e.t.Helper()
	e.t.Logf("%s grew by %d KiB at most %s", g.what, g.bytes>>10, while)
	if g.bytes > limit {
		e.t.Errorf("%s grew by %d KiB %s, want under %d KiB", g.what, g.bytes>>10, while, limit>>10)
	}
}

// plant puts data on the channel through the backend: through the
// harness's Planter, else InsertBackdated. The case is skipped only when
// the harness cannot plant, or the service refuses an item that large
// (CodeTooLarge: nobody can put it there, so the attack cannot happen);
// any other failure fails the case.
func (e *env) plant(data []byte) {
	e.t.Helper()
	if err := e.tryPlant(data); err != nil {
		e.plantFailed(data, err)
	}
}

func (e *env) plantFailed(data []byte, err error) {
	e.t.Helper()
	e.skipIfUnsupported("Plant or InsertBackdated", err)
	if errors.Is(err, sdk.ErrTooLarge) {
		e.t.Skipf("the service refuses a planted item of %d bytes: %v", len(data), err)
	}
	e.t.Fatalf("plant an item of %d bytes: %v", len(data), err)
}

func (e *env) tryPlant(data []byte) error {
	if p, ok := e.h.(Planter); ok {
		return p.Plant(e.ctx, e.t, e.pub, data)
	}
	return e.h.InsertBackdated(e.ctx, e.t, e.pub, data)
}

// plantOversized plants the largest item over MaxPayload the service
// takes: from min(oversizedBytes, 256 times MaxPayload) (at least four
// times MaxPayload) down by a quarter each time the service refuses one as
// too large (a Matrix homeserver takes events up to 64 KiB), to
// MaxPayload+1 last. It returns the item planted.
func (e *env) plantOversized() []byte {
	e.t.Helper()
	n := max(4*e.caps.MaxPayload+1, min(oversizedBytes, 256*e.caps.MaxPayload))
	for {
		big := e.payload(n)
		err := e.tryPlant(big)
		if err == nil {
			return big
		}
		if !errors.Is(err, sdk.ErrTooLarge) || n == e.caps.MaxPayload+1 {
			e.plantFailed(big, err)
		}
		e.t.Logf("the service refuses an item of %d bytes; trying a smaller one", n)
		n = max(e.caps.MaxPayload+1, n*3/4)
	}
}

// leakCheck returns a function that fails the case if goroutines started
// after it was called are still running (closing every channel first).
func (e *env) leakCheck() func() {
	e.closeAll()
	snapshot := goleak.IgnoreCurrent()
	return func() {
		e.t.Helper()
		e.closeAll()
		if err := goleak.Find(append([]goleak.Option{snapshot}, e.cfg.leak...)...); err != nil {
			e.t.Errorf("goroutines left after Close: %v", err)
		}
	}
}

// testOversized: an item far over MaxPayload is put on the channel (a file
// in the folder, a mail, a commit, an event, a post): the subscriber never
// delivers it, reads it through a limit, and goes on to the next item.
func testOversized(e *env) {
	leaks := e.leakCheck()
	big := e.plantOversized()
	after := e.items(1)
	e.publish(e.channel(e.pub), after)
	stop := e.memWatch()
	s := e.subscribe(e.channel(e.sub), nil, 0)
	s.wait(datas(after))
	e.sleep(e.settle())
	grew := stop()
	s.stop()
	if n := s.c.times(big); n > 0 {
		e.t.Errorf("an item of %d bytes (MaxPayload %d) was delivered %d times; skip it", len(big), e.caps.MaxPayload, n)
	}
	// Holding an item of the largest size planted, even briefly, is the
	// defect this case is for. A process's resident memory also holds the
	// runtime's slack (garbage up to GOGC, pages not yet returned): twice.
	limit := int64(oversizedBytes)
	if e.cfg.holdsOne != "" {
		e.t.Logf("the adapter holds one item whole: %s", e.cfg.holdsOne)
		limit *= 2
		if raceEnabled {
			// Built with the race detector, growing a buffer to the
			// item's size allocates it twice (make, then the copy append
			// makes in one step otherwise: TestRaceGrowAllocatesTwice),
			// and the first is garbage not yet freed.
			limit += oversizedBytes
		}
	}
	if grew.rss {
		limit *= 2
	}
	e.checkMem(grew, "reading past an oversized item", limit)
	leaks()
}

// testJunkFlood: junkItems items nobody published through the channel
// arrive at once (a flood from a compromised account or peer); the
// subscriber reads them all, and the item published after them, with
// bounded memory.
func testJunkFlood(e *env) {
	leaks := e.leakCheck()
	var junk [][]byte
	for range junkItems {
		j := e.payload(e.size())
		e.plant(j)
		junk = append(junk, j)
	}
	after := e.items(1)
	e.publish(e.channel(e.pub), after)
	stop := e.memWatch()
	s := e.subscribe(e.channel(e.sub), nil, 0)
	s.wait(append(junk, datas(after)...))
	grew := stop()
	s.stop()
	e.checkMem(grew, "reading a flood of junk items", memCeiling)
	leaks()
}

// testStallAndTrickle: the service stops answering with its connections
// open, then answers a few bytes at a time (through the harness's
// proxies). A publish on a short deadline returns by its deadline; the
// subscriber's Close returns promptly and its Subscribe ends; memory stays
// bounded; once the service is back, a new subscription delivers what was
// published; nothing of the case is left running.
func testStallAndTrickle(e *env) {
	ps := e.proxies()
	leaks := e.leakCheck()
	first := e.items(1)
	e.publish(e.channel(e.pub), first)
	for _, fault := range []struct {
		name  string
		apply func()
	}{
		{"stalls", func() {
			for _, p := range ps {
				p.Stall()
			}
		}},
		{"trickles", func() {
			for _, p := range ps {
				p.Trickle(16, 50*time.Millisecond)
			}
		}},
	} {
		s := e.subscribe(e.channel(e.sub), nil, 0)
		s.wait(datas(first))
		stop := e.memWatch()
		fault.apply()
		// A publish while the service is out returns by its deadline.
		ctx, cancel := context.WithTimeout(e.ctx, 2*time.Second)
		start := time.Now()
		done := make(chan struct{})
		go func() {
			defer close(done)
			resp, err := e.channel(e.pub).Publish(ctx, sdk.PublishRequest{Items: e.items(1)})
			if err == nil && len(resp.Results) == 1 && resp.Results[0].Err == nil {
				e.t.Logf("publish while the service %s succeeded (in %v)", fault.name, time.Since(start).Round(time.Millisecond))
			}
		}()
		select {
		case <-done:
		case <-time.After(2*time.Second + prompt):
			e.t.Errorf("Publish with a 2s deadline while the service %s did not return within %v", fault.name, 2*time.Second+prompt)
		}
		cancel()
		e.closeWithin(e.channel(e.sub), "while the service "+fault.name)
		e.forget(e.sub)
		select {
		case <-s.done:
		case <-time.After(prompt):
			e.t.Fatalf("Subscribe still running %v after Close while the service %s", prompt, fault.name)
		}
		if s.err != nil && !errors.Is(s.err, context.Canceled) && !errors.Is(s.err, sdk.ErrClosed) && !errors.Is(s.err, sdk.ErrUnavailable) {
			e.t.Logf("Subscribe ended by Close while the service %s: %v", fault.name, s.err)
		}
		grew := stop()
		e.checkMem(grew, "while the service "+fault.name, memCeiling)
		for _, p := range ps {
			p.Up()
		}
		<-done
	}
	again := e.items(1)
	e.publishRetry(e.channel(e.pub), again)
	s := e.subscribe(e.channel(e.sub), nil, 0)
	s.wait(datas(append(first, again...)))
	s.stop()
	leaks()
}
