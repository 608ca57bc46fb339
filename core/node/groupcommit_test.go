package node

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// TestGroupCommit: callers that arrive while a save runs share the next
// one, and each caller returns only after a save that began after its
// change: a save serves exactly the changes made before it started.
func TestGroupCommit(t *testing.T) {
	g := newGroupCommit()
	var changes, saves atomic.Int64
	var mu sync.Mutex
	saved := int64(0) // the newest change a finished save covered
	first := make(chan struct{})
	release := make(chan struct{})
	save := func() error {
		covers := changes.Load()
		if saves.Add(1) == 1 {
			close(first)
			<-release // the others arrive while this one runs
		}
		mu.Lock()
		saved = max(saved, covers)
		mu.Unlock()
		return nil
	}
	const callers = 50
	var wg sync.WaitGroup
	wg.Go(func() {
		changes.Add(1)
		if err := g.do(save); err != nil {
			t.Error(err)
		}
	})
	<-first
	for range callers - 1 {
		wg.Go(func() {
			mine := changes.Add(1)
			if err := g.do(save); err != nil {
				t.Error(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if saved < mine {
				t.Errorf("change %d returned after saves covering only %d", mine, saved)
			}
		})
	}
	// Let the others queue (no timing: the first save holds until every
	// caller has counted itself in).
	for {
		g.mu.Lock()
		n := g.asked
		g.mu.Unlock()
		if n == callers {
			break
		}
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	if n := saves.Load(); n != 2 {
		t.Errorf("%d saves for %d callers, want 2 (the first, and one for all who waited)", n, callers)
	}

	boom := errors.New("disk full")
	if err := g.do(func() error { return boom }); !errors.Is(err, boom) {
		t.Errorf("a failed save returned %v", err)
	}
}

// TestCoalesced: one run at a time; calls made during a run return at once
// and together make exactly one more run; a call from inside the run does
// not deadlock and makes one more run too.
func TestCoalesced(t *testing.T) {
	var c coalesced
	var runs, active atomic.Int64
	first := make(chan struct{})
	release := make(chan struct{})
	f := func() {
		if active.Add(1) > 1 {
			t.Error("two runs at once")
		}
		defer active.Add(-1)
		if runs.Add(1) == 1 {
			close(first)
			<-release
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { c.do(f) })
	<-first
	for range 20 {
		c.do(f) // returns at once: the first run holds until release
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("%d runs while the first was held", n)
	}
	close(release)
	wg.Wait()
	if n := runs.Load(); n != 2 {
		t.Errorf("%d runs, want 2 (the first, and one for the 20 calls during it)", n)
	}

	runs.Store(0)
	var inner func()
	inner = func() {
		if runs.Add(1) == 1 {
			c.do(inner) // from inside: asks for one more run
		}
	}
	c.do(inner)
	if n := runs.Load(); n != 2 {
		t.Errorf("a call from inside made %d runs in all, want 2", n)
	}
}
