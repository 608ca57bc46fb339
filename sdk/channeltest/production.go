package channeltest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/channeltest/faultproxy"
)

// The cases below check what breaks in production rather than in a demo:
// a channel closed under a running subscription, calls after Close, two
// subscriptions at once, keys that break the rule, a state directory lost
// or put back from an older copy, the service going away and coming back,
// and a publish cut off half way. They are registered after the basic
// cases, in this order.
func init() {
	cases = append(cases,
		kase{"CloseDuringSubscribe", testCloseDuringSubscribe},
		kase{"AfterClose", testAfterClose},
		kase{"TwoSubscribes", testTwoSubscribes},
		kase{"InvalidKeys", testInvalidKeys},
		kase{"LostState", testLostState},
		kase{"CursorAhead", testCursorAhead},
		kase{"Outage", testOutage},
		kase{"HalfFail", testHalfFail},
	)
}

// outageCall bounds one call made while the service is away: a call that
// hangs longer stalls the host's queue behind it.
const outageCall = time.Minute

// drastic reports whether err would make a host do more than retry: reset
// the cursor, or stop and wait for the user.
func drastic(err error) bool {
	switch sdk.CodeOf(err) {
	case sdk.CodeCursorInvalid, sdk.CodeAuthFailed, sdk.CodeBadConfig, sdk.CodeNeedsUserAction, sdk.CodeNotFound, sdk.CodeInvalidArgument:
		return true
	}
	return false
}

// forget drops member m from the open channels after the case closed it.
func (e *env) forget(m int) { delete(e.open, m) }

// closeWithin closes ch and fails the case unless Close returns within
// prompt, without an error.
func (e *env) closeWithin(ch sdk.Channel, what string) {
	e.t.Helper()
	done := make(chan error, 1)
	go func() { done <- ch.Close() }()
	select {
	case err := <-done:
		if err != nil {
			e.t.Errorf("Close %s: %v", what, err)
		}
	case <-time.After(prompt):
		e.t.Fatalf("Close %s did not return within %v: Close must cancel what is in flight (sdk.Lifecycle does)", what, prompt)
	}
}

func testCloseDuringSubscribe(e *env) {
	ch := e.channel(e.sub)
	items := e.items(1)
	e.publish(e.channel(e.pub), items)
	s := e.subscribe(ch, nil, 0)
	s.wait(datas(items))

	// With the service behind a proxy, hold a Publish on this channel in
	// flight too: Close must cancel its I/O, not wait for the server.
	var inflight chan error
	if p, ok := e.h.(Proxied); ok {
		for _, x := range p.Proxies() {
			x.Stall()
			defer x.Up()
		}
		inflight = make(chan error, 1)
		started := e.proxyHeld(p)
		go func() {
			resp, err := ch.Publish(e.ctx, sdk.PublishRequest{Items: e.items(1)})
			if err == nil && len(resp.Results) == 1 {
				err = resp.Results[0].Err
			}
			inflight <- err
		}()
		started()
	}
	e.closeWithin(ch, "with a Subscribe running")
	e.forget(e.sub)
	select {
	case <-s.done:
	case <-time.After(prompt):
		e.t.Fatalf("Subscribe still running %v after Close", prompt)
	}
	if e.ctx.Err() != nil {
		e.t.Fatalf("Subscribe returned only when the case deadline passed, not at Close (%v)", s.err)
	}
	if drastic(s.err) {
		e.t.Errorf("Subscribe ended by Close returned %v: a host would reset the cursor or wait for the user; return nil, ctx.Err() or sdk.ErrClosed", s.err)
	} else {
		e.t.Logf("Subscribe ended by Close returned %v", s.err)
	}
	if inflight != nil {
		select {
		case err := <-inflight:
			if err == nil {
				e.t.Log("the Publish held in flight succeeded before Close")
			}
		case <-time.After(prompt):
			e.t.Fatalf("a Publish in flight (service stalled) still running %v after Close returned", prompt)
		}
	}
}

// proxyHeld returns a function that waits (briefly) until the proxies hold
// bytes of a request, so that a call is known to be in flight.
func (e *env) proxyHeld(p Proxied) func() {
	base := int64(0)
	for _, x := range p.Proxies() {
		base += x.Stats().Held
	}
	return func() {
		deadline := time.Now().Add(prompt)
		for time.Now().Before(deadline) {
			held := int64(0)
			for _, x := range p.Proxies() {
				held += x.Stats().Held
			}
			if held > base {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		e.t.Log("no request bytes reached the stalled proxy; Close is tested without a call in flight")
	}
}

// within runs f and fails the case unless it returns within prompt.
func (e *env) within(what string, f func()) {
	e.t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(prompt):
		e.t.Fatalf("%s did not return within %v", what, prompt)
	}
}

func testAfterClose(e *env) {
	ch := e.channel(e.pub)
	e.publish(ch, e.items(1))
	e.closeWithin(ch, "")
	e.forget(e.pub)
	closed := func(what string, err error) {
		e.t.Helper()
		if !errors.Is(err, sdk.ErrClosed) {
			e.t.Errorf("%s after Close: got %v, want an error matching sdk.ErrClosed", what, err)
		}
	}
	e.within("Publish after Close", func() {
		resp, err := ch.Publish(e.ctx, sdk.PublishRequest{Items: e.items(1)})
		if err == nil && len(resp.Results) == 1 {
			err = resp.Results[0].Err
		}
		closed("Publish", err)
	})
	e.within("Subscribe after Close", func() {
		err := ch.Subscribe(e.ctx, sdk.SubscribeRequest{}, sdk.SinkFunc(func(context.Context, sdk.Delivery) error { return nil }))
		closed("Subscribe", err)
	})
	if b, ok := ch.(sdk.Board); ok && e.caps.Board {
		e.within("Board Put after Close", func() { closed("Put", b.Put(e.ctx, sdk.PutRequest{Key: key(), Value: e.payload(8)})) })
		e.within("Board Get after Close", func() {
			_, err := b.Get(e.ctx, sdk.GetRequest{})
			closed("Get", err)
		})
	}
	if d, ok := ch.(sdk.Deleter); ok && e.caps.Delete != sdk.DeleteNone && e.caps.Delete != "" {
		e.within("Delete after Close", func() {
			_, err := d.Delete(e.ctx, sdk.DeleteRequest{IDs: []string{"x"}})
			closed("Delete", err)
		})
	}
	e.within("a second Close", func() {
		if err := ch.Close(); err != nil {
			e.t.Errorf("a second Close: %v, want nil", err)
		}
	})
}

func testTwoSubscribes(e *env) {
	ch := e.channel(e.sub)
	// The second starts once the first runs, so that which came later is known.
	s1 := e.subscribe(ch, nil, 0)
	a1 := e.items(2)
	e.publish(e.channel(e.pub), a1)
	s1.wait(datas(a1))
	s2 := e.subscribe(ch, nil, 0)
	a2 := e.items(max(e.cfg.items/4, 2))
	e.publish(e.channel(e.pub), a2)
	s1.wait(datas(a2))
	s2.wait(append(datas(a1), datas(a2)...))
	// Ending the later one leaves the earlier one running.
	s2.stop()
	b := e.items(2)
	e.publish(e.channel(e.pub), b)
	s1.wait(datas(b))
	s1.stop()
}

// badKeys break the key rule (sdk.ValidKey) in the ways that do harm: a
// path, an empty key, one too long, separators and non-ASCII.
var badKeys = []string{"", "../x", "a/b", `a\b`, "a b", "a.b", "k\x00", "clé", strings.Repeat("k", sdk.MaxKeyLen+1)}

func testInvalidKeys(e *env) {
	good := e.items(2)
	items := []sdk.PublishItem{good[0]}
	for _, k := range badKeys {
		it := e.item(e.payload(e.size()))
		it.IdempotencyKey = k
		items = append(items, it)
	}
	items = append(items, good[1])
	res := e.publishRaw(e.channel(e.pub), items)
	if res[0].Err != nil || res[len(res)-1].Err != nil {
		e.t.Errorf("valid items in a batch with invalid keys failed: %v, %v (an invalid key fails its item alone)", res[0].Err, res[len(res)-1].Err)
	}
	for i, k := range badKeys {
		if err := res[i+1].Err; !errors.Is(err, sdk.ErrInvalidArgument) {
			e.t.Errorf("idempotency key %q: got %v (ID %q), want an error matching sdk.ErrInvalidArgument", k, err, res[i+1].ID)
		}
	}
	if b, ok := e.channel(e.pub).(sdk.Board); ok && e.caps.Board {
		for _, k := range badKeys {
			if err := b.Put(e.ctx, sdk.PutRequest{Key: k, Value: e.payload(8)}); !errors.Is(err, sdk.ErrInvalidArgument) {
				e.t.Errorf("board key %q: Put returned %v, want an error matching sdk.ErrInvalidArgument", k, err)
			}
			resp, err := b.Get(e.ctx, sdk.GetRequest{Keys: []string{k}})
			if err != nil && !errors.Is(err, sdk.ErrInvalidArgument) {
				e.t.Errorf("board key %q: Get returned %v, want no entry or sdk.ErrInvalidArgument", k, err)
			}
			if len(resp.Entries) > 0 {
				e.t.Errorf("board key %q: Get returned %d entries for a key that cannot exist", k, len(resp.Entries))
			}
		}
		resp, err := b.Get(e.ctx, sdk.GetRequest{})
		if err != nil {
			e.t.Fatalf("board Get(): %v", err)
		}
		for _, en := range resp.Entries {
			if !sdk.ValidKey(en.Key) {
				e.t.Errorf("board lists the invalid key %q", en.Key)
			}
		}
	}
	s := e.subscribe(e.channel(e.sub), nil, 0)
	s.wait(datas(good))
	e.sleep(e.settle())
	s.stop()
	for i, k := range badKeys {
		if n := s.c.times(items[i+1].Data); n > 0 {
			e.t.Errorf("the item with the invalid key %q was delivered %d times", k, n)
		}
	}
}

// stateDirs returns the harness's state directories or skips the case.
func (e *env) stateDirs() []string {
	e.t.Helper()
	h, ok := e.h.(StateDirs)
	if !ok {
		e.t.Skip("the harness does not implement channeltest.StateDirs")
	}
	seen := map[string]bool{}
	var dirs []string
	for m := range e.h.Members() {
		d := h.StateDir(m)
		if d == "" {
			e.t.Skipf("member %d has no state directory", m)
		}
		if !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// resumeOrInvalid subscribes from cursor, issued before the adapter's
// state was lost or put back, and requires want (published since) to
// arrive: either from that cursor, or, after Subscribe said
// sdk.CodeCursorInvalid, from nil as a host resubscribes.
func (e *env) resumeOrInvalid(ch sdk.Channel, cursor []byte, want [][]byte, what string) {
	e.t.Helper()
	s := e.subscribe(ch, cursor, 0)
	for s.c.missing(want) > 0 {
		select {
		case <-s.c.changed:
		case <-s.done:
			if s.c.missing(want) == 0 {
				break
			}
			if !errors.Is(s.err, sdk.ErrCursorInvalid) {
				e.t.Fatalf("%s: Subscribe from the earlier cursor returned %v (%s), want the new items or sdk.CodeCursorInvalid", what, s.err, s.c.summary())
			}
			e.t.Logf("%s: the earlier cursor is invalid (%v); resubscribing from the start", what, s.err)
			s2 := e.subscribe(ch, nil, 0)
			s2.wait(want)
			s2.stop()
			return
		case <-e.ctx.Done():
			e.t.Fatalf("%s: items published since never arrived from the earlier cursor, and Subscribe did not say the cursor is invalid (%s): resume, or return sdk.CodeCursorInvalid", what, s.c.summary())
		}
	}
	e.t.Logf("%s: resumed from the earlier cursor (%s)", what, s.c.summary())
	s.stop()
}

func testLostState(e *env) {
	dirs := e.stateDirs()
	cursor := e.readPast(nil, 2)
	e.restart()
	for _, d := range dirs {
		if err := EmptyDir(d); err != nil {
			e.t.Fatalf("wipe the state directory: %v", err)
		}
	}
	b := e.items(2)
	e.publish(e.channel(e.pub), b)
	e.resumeOrInvalid(e.channel(e.sub), cursor, datas(b), "state directory lost")
}

func testCursorAhead(e *env) {
	dirs := e.stateDirs()
	first := e.readPast(nil, 2)
	e.restart()
	snaps := make([]string, len(dirs))
	for i, d := range dirs {
		snaps[i] = filepath.Join(e.t.TempDir(), "state")
		if err := copyTree(d, snaps[i]); err != nil {
			e.t.Fatalf("copy the state directory: %v", err)
		}
	}
	ahead := e.readPast(first, 2)
	e.restart()
	for i, d := range dirs { // the state put back from the older copy
		if err := EmptyDir(d); err != nil {
			e.t.Fatalf("wipe the state directory: %v", err)
		}
		if err := copyTree(snaps[i], d); err != nil {
			e.t.Fatalf("restore the state directory: %v", err)
		}
	}
	c := e.items(2)
	e.publish(e.channel(e.pub), c)
	e.resumeOrInvalid(e.channel(e.sub), ahead, datas(c), "state directory restored from an older copy")
}

// proxies returns the harness's proxies or skips the case.
func (e *env) proxies() []*faultproxy.Proxy {
	e.t.Helper()
	h, ok := e.h.(Proxied)
	if !ok || len(h.Proxies()) == 0 {
		e.t.Skip("the harness does not implement channeltest.Proxied (the service is not behind a faultproxy)")
	}
	ps := h.Proxies()
	e.t.Cleanup(func() {
		for _, p := range ps {
			p.Up()
		}
	})
	return ps
}

// healthReporter reports whether ch reports its health.
func healthReporter(ch sdk.Channel) (sdk.Healther, bool) {
	h, ok := ch.(sdk.Healther)
	if r, isRemote := ch.(interface{ ReportsHealth() bool }); ok && isRemote {
		ok = r.ReportsHealth()
	}
	return h, ok
}

// healthUntil polls ch's Health until good says yes, for at most d.
func (e *env) healthUntil(h sdk.Healther, d time.Duration, good func(sdk.Health) bool) (sdk.Health, bool) {
	deadline := time.Now().Add(d)
	for {
		ctx, cancel := context.WithTimeout(e.ctx, prompt)
		got := h.Health(ctx)
		cancel()
		if good(got) {
			return got, true
		}
		if time.Now().After(deadline) || e.ctx.Err() != nil {
			return got, false
		}
		e.sleep(200 * time.Millisecond)
	}
}

// publishOutage publishes items while the service may be away: it returns
// the items to retry, and fails the case for a call that hangs or an error
// a host would not retry.
func (e *env) publishOutage(ch sdk.Channel, items []sdk.PublishItem) (retry []sdk.PublishItem) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, outageCall)
	defer cancel()
	resp, err := ch.Publish(ctx, sdk.PublishRequest{Items: items})
	switch {
	case ctx.Err() != nil && e.ctx.Err() == nil:
		e.t.Fatalf("Publish while the service is away did not return within %v: fail with sdk.CodeUnavailable instead", outageCall)
	case err != nil && !sdk.CodeOf(err).Retryable():
		e.t.Fatalf("Publish while the service is away: %v: a host would not retry it; say sdk.CodeUnavailable", err)
	case err != nil:
		return items
	case len(resp.Results) != len(items):
		e.t.Fatalf("Publish: %d results for %d items", len(resp.Results), len(items))
	}
	for i, r := range resp.Results {
		switch {
		case r.Err == nil:
		case sdk.CodeOf(r.Err).Retryable():
			retry = append(retry, items[i])
		default:
			e.t.Errorf("item %d failed while the service was away with %v: a host would drop it; say sdk.CodeUnavailable", i, r.Err)
		}
	}
	return retry
}

// publishRetry publishes items as a host does after an outage: retryable
// failures again, with the same keys, until each item is in or the case
// deadline passes.
func (e *env) publishRetry(ch sdk.Channel, items []sdk.PublishItem) {
	e.t.Helper()
	wait := 100 * time.Millisecond
	for len(items) > 0 {
		items = e.publishOutage(ch, items)
		if len(items) == 0 || e.t.Failed() {
			return
		}
		if e.ctx.Err() != nil {
			e.t.Fatalf("%d items still failing at the case deadline", len(items))
		}
		e.sleep(wait)
		wait = min(2*wait, 2*time.Second)
	}
}

// subscribeLikeHost runs Subscribe as a host does: after a retryable error
// (or a few unclassified ones, or a return without error) it resubscribes
// from the last accepted cursor; after sdk.CodeCursorInvalid from the
// start. Any other error ends it and fails the wait.
func (e *env) subscribeLikeHost(ch sdk.Channel, cursor []byte, resubscribed *atomic.Int64) *subscription {
	ctx, cancel := context.WithCancel(e.ctx)
	s := &subscription{e: e, cancel: cancel, done: make(chan struct{})}
	s.c = newCollector(e.published, 0, cancel)
	go func() {
		defer close(s.done)
		cur, unknown, wait := cursor, 0, 100*time.Millisecond
		for {
			before := s.c.lastCursor()
			err := ch.Subscribe(ctx, sdk.SubscribeRequest{Cursor: cur}, s.c)
			if ctx.Err() != nil {
				s.err = ctx.Err()
				return
			}
			if c := s.c.lastCursor(); len(c) > 0 && string(c) != string(before) {
				cur, unknown, wait = c, 0, 100*time.Millisecond // progress
			}
			switch code := sdk.CodeOf(err); {
			case errors.Is(err, sdk.ErrCursorInvalid):
				cur = nil
			case err == nil || code.Retryable():
			case code == sdk.CodeUnknown && unknown < sdk.MaxUnknownRetries:
				unknown++
			default:
				s.err = fmt.Errorf("a host would stop retrying: %w", err)
				return
			}
			resubscribed.Add(1)
			select {
			case <-ctx.Done():
				s.err = ctx.Err()
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, 2*time.Second)
		}
	}()
	e.t.Cleanup(func() {
		cancel()
		<-s.done
	})
	return s
}

func testOutage(e *env) {
	proxies := e.proxies()
	pub, sub := e.channel(e.pub), e.channel(e.sub)
	a := e.items(2)
	e.publish(pub, a)
	var resub atomic.Int64
	s := e.subscribeLikeHost(sub, nil, &resub)
	s.wait(datas(a))

	for _, p := range proxies {
		p.Down()
	}
	b := e.items(2)
	retry := e.publishOutage(pub, b)
	e.t.Logf("while the service was away: %d of %d items to retry", len(retry), len(b))
	if h, ok := healthReporter(pub); ok {
		got, ok := e.healthUntil(h, outageCall, func(h sdk.Health) bool { return h.State != sdk.HealthOK })
		if !ok {
			e.t.Errorf("Health said %q through an outage (%q), want degraded or down", got.State, got.Message)
		} else {
			e.t.Logf("health during the outage: %s: %s", got.State, got.Message)
		}
	}
	for _, p := range proxies {
		p.Up()
	}
	e.publishRetry(pub, retry)
	c := e.items(2)
	e.publishRetry(pub, c)
	s.wait(append(append(datas(a), datas(b)...), datas(c)...))
	e.t.Logf("subscriber resubscribed %d times", resub.Load())
	if h, ok := healthReporter(pub); ok {
		if got, ok := e.healthUntil(h, outageCall, func(h sdk.Health) bool { return h.State == sdk.HealthOK }); !ok {
			e.t.Errorf("Health still %q after the service came back (%q), want ok", got.State, got.Message)
		}
	}
	s.stop()
}

func testHalfFail(e *env) {
	proxies := e.proxies()
	pub := e.channel(e.pub)
	n := max(e.cfg.items/2, 4)
	sent := func() []int64 {
		out := make([]int64, len(proxies))
		for i, p := range proxies {
			out[i] = p.Stats().ToTarget
		}
		return out
	}
	// A first batch measures how many bytes a batch sends through each
	// proxy; the next one is cut half way through that.
	before := sent()
	e.publish(pub, e.items(n))
	after := sent()
	items := e.items(n)
	for i, p := range proxies {
		if d := after[i] - before[i]; d > 1 {
			p.CutAfter(d / 2)
		}
	}
	retry := e.publishOutage(pub, items)
	for _, p := range proxies {
		p.Up()
	}
	e.t.Logf("publish cut half way: %d of %d items to retry", len(retry), n)
	e.publishRetry(pub, retry)

	s := e.subscribe(e.channel(e.sub), nil, 0)
	s.wait(datas(items))
	e.sleep(e.settle())
	s.stop()
	level := e.caps.Idempotency.Level
	for i, it := range items {
		k := s.c.times(it.Data)
		switch {
		case level == sdk.IdempotencyNone && k > 1:
			e.t.Logf("item %d delivered %d times (idempotency none: core dedupes)", i, k)
		case level != sdk.IdempotencyNone && k != 1:
			e.t.Errorf("idempotency %s: item %d, retried with its key after a cut publish, was delivered %d times, want 1", level, i, k)
		}
	}
}

// EmptyDir removes everything inside dir, keeping dir: a harness of a
// shared folder invalidates cursors with it, as when friends replace the
// share.
func EmptyDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, en := range ents {
		if err := os.RemoveAll(filepath.Join(dir, en.Name())); err != nil {
			return err
		}
	}
	return nil
}

// copyTree copies the regular files and directories under src to dst.
func copyTree(src, dst string) error {
	return os.CopyFS(dst, os.DirFS(src))
}
