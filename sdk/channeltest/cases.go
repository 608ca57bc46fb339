package channeltest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/remora-p2p/remora/sdk"
)

// kase is one conformance case.
type kase struct {
	name string
	run  func(e *env)
}

var cases = []kase{
	{"Capabilities", testCapabilities},
	{"RoundTrip", testRoundTrip},
	{"Resume", testResume},
	{"Backdated", testBackdated},
	{"CursorInvalid", testCursorInvalid},
	{"Idempotency", testIdempotency},
	{"MaxPayload", testMaxPayload},
	{"Concurrent", testConcurrent},
	{"Cancel", testCancel},
	{"Board", testBoard},
	{"Delete", testDelete},
	{"Leaks", testLeaks},
}

func run(t *testing.T, adapter sdk.Adapter, newHarness func(t *testing.T) Harness, cfg config) {
	if adapter == nil {
		t.Fatal("channeltest: Run needs the adapter")
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if reason, ok := cfg.skip[c.name]; ok {
				t.Skipf("skipped by the harness: %s", reason)
			}
			ctx, cancel := context.WithTimeout(t.Context(), cfg.timeout)
			defer cancel()
			h := newHarness(t)
			if h.Members() < 1 {
				t.Fatalf("harness has %d members, want at least 1", h.Members())
			}
			b := newBackend(t, adapter, cfg)
			e := &env{
				t: t, ctx: ctx, cfg: cfg, h: h, b: b,
				open:      map[int]sdk.Channel{},
				published: &payloads{m: map[string]int{}},
			}
			if h.Members() > 1 {
				e.sub = 1
			}
			t.Cleanup(func() { e.closeAll(); b.stop(t) })
			e.channel(e.pub) // learn the capabilities
			c.run(e)
		})
	}
}

func testCapabilities(e *env) {
	info := e.b.adapter(e.t).Info()
	if info.Name == "" {
		e.t.Error("Info().Name is empty")
	}
	if err := info.Defaults.Validate(); err != nil {
		e.t.Errorf("Info().Defaults: %v", err)
	}
	if err := e.caps.Validate(); err != nil {
		e.t.Errorf("Capabilities(): %v", err)
	}
	if !e.caps.Push && e.caps.PollInterval <= 0 {
		e.t.Error("Capabilities(): a poll channel (Push false) must give its PollInterval")
	}
	if e.caps.Addressed && e.h.Address(e.sub) == "" {
		e.t.Error("channel is Addressed but the harness gives no address for the subscriber")
	}
	e.t.Logf("capabilities: %+v", e.caps)
}

func testRoundTrip(e *env) {
	items := e.items(e.cfg.items)
	res := e.publish(e.channel(e.pub), items)
	s := e.subscribe(e.channel(e.sub), nil, 0)
	s.wait(datas(items))
	e.sleep(e.settle())
	s.stop()
	for i, it := range items {
		if got := s.c.ids[string(it.Data)]; got != res[i].ID {
			e.t.Logf("item %d: published as %q, delivered as %q (IDs differ; both must be accepted by Delete)", i, res[i].ID, got)
		}
	}
	if d := s.c.duplicates(); d > 0 {
		e.t.Logf("round trip: %d duplicate deliveries (allowed: delivery is at-least-once)", d)
	}
	if len(s.c.lastCursor()) == 0 {
		e.t.Error("no delivery carried a cursor")
	}
}

// resumeCheck requires that before (items accepted before the cursor) were
// redelivered at most cfg.redelivery times in s.
func (e *env) resumeCheck(s *subscription, before []string) {
	e.t.Helper()
	again := 0
	for _, k := range before {
		again += s.c.times([]byte(k))
	}
	if again > e.cfg.redelivery {
		e.t.Errorf("resuming from the cursor redelivered %d items from before it (tolerance %d)", again, e.cfg.redelivery)
	}
}

func testResume(e *env) {
	n := max(e.cfg.items, 4)
	items := e.items(n)
	e.publish(e.channel(e.pub), items)
	k := n / 2
	s1 := e.subscribe(e.channel(e.sub), nil, k)
	s1.waitStopped()
	s1.stop()
	before := s1.c.delivered()
	cursor := s1.c.lastCursor()
	if len(before) != k || len(cursor) == 0 {
		e.t.Fatalf("first subscription: took %d items (want %d), cursor %x", len(before), k, cursor)
	}
	e.restart()
	s2 := e.subscribe(e.channel(e.sub), cursor, 0)
	var rest [][]byte
	for _, it := range items {
		if s1.c.times(it.Data) == 0 {
			rest = append(rest, it.Data)
		}
	}
	s2.wait(rest)
	e.sleep(e.settle())
	s2.stop()
	e.resumeCheck(s2, before)
}

func testBackdated(e *env) {
	items := e.items(max(e.cfg.items/2, 2))
	e.publish(e.channel(e.pub), items)
	s1 := e.subscribe(e.channel(e.sub), nil, 0)
	s1.wait(datas(items))

	// A live subscription must see an item that sorts before what it has
	// already delivered.
	x1 := e.payload(e.size())
	if err := e.h.InsertBackdated(e.ctx, e.t, e.pub, x1); err != nil {
		s1.stop()
		e.skipIfUnsupported("InsertBackdated", err)
		e.t.Fatalf("InsertBackdated: %v", err)
	}
	s1.wait([][]byte{x1})
	e.sleep(e.settle())
	s1.stop()
	before := s1.c.delivered()

	// So must one resuming from a cursor taken after it.
	x2 := e.payload(e.size())
	if err := e.h.InsertBackdated(e.ctx, e.t, e.pub, x2); err != nil {
		e.t.Fatalf("InsertBackdated: %v", err)
	}
	s2 := e.subscribe(e.channel(e.sub), s1.c.lastCursor(), 0)
	s2.wait([][]byte{x2})
	e.sleep(e.settle())
	s2.stop()
	e.resumeCheck(s2, before)
}

func testCursorInvalid(e *env) {
	cursor := e.readPast(nil, max(e.cfg.items/4, 2))

	if err := e.h.InvalidateCursor(e.ctx, e.t); err != nil {
		e.skipIfUnsupported("InvalidateCursor", err)
		e.t.Fatalf("InvalidateCursor: %v", err)
	}
	// Close and reopen so that no adapter cache hides the change; a real
	// host meets this case mostly after a restart.
	e.restart()
	s2 := e.subscribe(e.channel(e.sub), cursor, 0)
	select {
	case <-s2.done:
	case <-e.ctx.Done():
		e.t.Fatalf("Subscribe from an invalidated cursor did not return an error (%s)", s2.c.summary())
	}
	if !errors.Is(s2.err, sdk.ErrCursorInvalid) {
		e.t.Fatalf("Subscribe from an invalidated cursor: got %v, want an error matching sdk.ErrCursorInvalid", s2.err)
	}

	// The host then resubscribes from nil: what is retained, and anything
	// new, arrives.
	fresh := e.items(max(e.cfg.items/4, 2))
	e.publish(e.channel(e.pub), fresh)
	s3 := e.subscribe(e.channel(e.sub), nil, 0)
	s3.wait(datas(fresh))
	s3.stop()
}

func testIdempotency(e *env) {
	level := e.caps.Idempotency.Level
	it := e.items(1)[0]
	ch := e.channel(e.pub)
	e.publish(ch, []sdk.PublishItem{it})
	e.publish(ch, []sdk.PublishItem{it})
	if level == sdk.IdempotencyStrong {
		e.restart()
		e.publish(e.channel(e.pub), []sdk.PublishItem{it})
	}
	// A marker published last tells when the subscriber has caught up.
	marker := e.items(1)
	e.publish(e.channel(e.pub), marker)
	s := e.subscribe(e.channel(e.sub), nil, 0)
	s.wait([][]byte{it.Data, marker[0].Data})
	e.sleep(e.settle())
	s.stop()
	n := s.c.times(it.Data)
	switch level {
	case sdk.IdempotencyStrong, sdk.IdempotencyWindow:
		if n != 1 {
			e.t.Errorf("idempotency %s: the same key published repeatedly was delivered %d times, want 1", level, n)
		}
	default:
		e.t.Logf("idempotency none: the same key published twice was delivered %d times", n)
	}
}

func testMaxPayload(e *env) {
	max := e.caps.MaxPayload
	exact := e.payload(max)
	over := e.payload(max + 1)
	small := e.payload(e.size())
	items := []sdk.PublishItem{e.item(exact), e.item(over), e.item(small)}
	res := e.publishRaw(e.channel(e.pub), items)
	if res[0].Err != nil {
		e.t.Errorf("item of exactly MaxPayload (%d %s): %v", max, e.caps.Counting, res[0].Err)
	}
	if !errors.Is(res[1].Err, sdk.ErrTooLarge) {
		e.t.Errorf("item of MaxPayload+1: got %v, want an error matching sdk.ErrTooLarge", res[1].Err)
	}
	if res[2].Err != nil {
		e.t.Errorf("small item in the same batch as an oversize one: %v", res[2].Err)
	}
	want := [][]byte{small}
	if res[0].Err == nil {
		want = append(want, exact)
	}
	s := e.subscribe(e.channel(e.sub), nil, 0)
	s.wait(want)
	e.sleep(e.settle())
	s.stop()
	if n := s.c.times(over); n > 0 {
		e.t.Errorf("the oversize item was rejected yet delivered %d times", n)
	}
}

func testConcurrent(e *env) {
	const writers = 4
	per := max(e.cfg.items/writers, 2)
	chans := make([]sdk.Channel, writers)
	work := make([][]sdk.PublishItem, writers)
	var all [][]byte
	for w := range writers {
		chans[w] = e.channel(w % e.h.Members())
		work[w] = e.items(per)
		all = append(all, datas(work[w])...)
	}
	s := e.subscribe(e.channel(e.sub), nil, 0)
	var wg sync.WaitGroup
	errs := make(chan error, writers*per)
	for w := range writers {
		wg.Go(func() {
			for _, it := range work[w] {
				resp, err := chans[w].Publish(e.ctx, sdk.PublishRequest{Items: []sdk.PublishItem{it}})
				switch {
				case err != nil:
					errs <- fmt.Errorf("writer %d: %w", w, err)
				case len(resp.Results) != 1:
					errs <- fmt.Errorf("writer %d: %d results for 1 item", w, len(resp.Results))
				case resp.Results[0].Err != nil:
					errs <- fmt.Errorf("writer %d: %w", w, resp.Results[0].Err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		e.t.Errorf("concurrent publish: %v", err)
	}
	if e.t.Failed() {
		return
	}
	s.wait(all)
	s.stop()
}

func testCancel(e *env) {
	ch := e.channel(e.sub)
	// Subscribe on an already cancelled context returns at once.
	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	done := make(chan error, 1)
	go func() {
		done <- ch.Subscribe(ctx, sdk.SubscribeRequest{}, sdk.SinkFunc(func(context.Context, sdk.Delivery) error { return nil }))
	}()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			e.t.Errorf("Subscribe with a cancelled context: got %v, want nil or context.Canceled", err)
		}
	case <-time.After(prompt):
		e.t.Fatalf("Subscribe with a cancelled context did not return within %v", prompt)
	}

	// A running subscription, idle after delivering, stops promptly (stop
	// checks the bound and the error).
	items := e.items(1)
	e.publish(e.channel(e.pub), items)
	s := e.subscribe(ch, nil, 0)
	s.wait(datas(items))
	e.sleep(e.settle())
	s.stop()

	// Publish on a cancelled context fails: the call or every item.
	resp, err := e.channel(e.pub).Publish(ctx, sdk.PublishRequest{Items: e.items(1)})
	if err == nil && (len(resp.Results) != 1 || resp.Results[0].Err == nil) {
		e.t.Errorf("Publish with a cancelled context succeeded: %+v", resp)
	}
}

func testBoard(e *env) {
	ch := e.channel(e.pub)
	board, ok := ch.(sdk.Board)
	if !e.caps.Board {
		if !ok {
			return
		}
		err := board.Put(e.ctx, sdk.PutRequest{Key: key(), Value: e.payload(8)})
		if !errors.Is(err, sdk.ErrUnsupported) {
			e.t.Errorf("channel without Board capability: Put returned %v, want sdk.ErrUnsupported", err)
		}
		return
	}
	if !ok {
		e.t.Fatal("Capabilities.Board is true but the channel does not implement sdk.Board")
	}
	k1, k2, missing := key(), key(), key()
	v1, v2, w := e.payload(e.size()), e.payload(e.size()), e.payload(e.size())
	for _, p := range []sdk.PutRequest{{Key: k1, Value: v1}, {Key: k1, Value: v2}, {Key: k2, Value: w}} {
		if err := board.Put(e.ctx, p); err != nil {
			e.t.Fatalf("Put %s: %v", p.Key, err)
		}
	}
	want := map[string][]byte{k1: v2, k2: w}
	check := func(b sdk.Board, who string) {
		e.t.Helper()
		e.eventually(who+": Get(k1) returns the latest value", func() error {
			return expectEntries(e.ctx, b, []string{k1}, map[string][]byte{k1: v2}, false)
		})
		e.eventually(who+": Get() lists every key", func() error {
			return expectEntries(e.ctx, b, nil, want, true)
		})
		if err := expectEntries(e.ctx, b, []string{missing}, map[string][]byte{}, false); err != nil {
			e.t.Errorf("%s: Get(missing key): %v", who, err)
		}
		if err := expectEntries(e.ctx, b, []string{k2, missing}, map[string][]byte{k2: w}, false); err != nil {
			e.t.Errorf("%s: Get(k2, missing key): %v", who, err)
		}
	}
	check(board, "same member")
	e.restart()
	for m := range e.h.Members() {
		b, ok := e.channel(m).(sdk.Board)
		if !ok {
			e.t.Fatalf("member %d: channel does not implement sdk.Board after restart", m)
		}
		check(b, fmt.Sprintf("member %d after restart", m))
	}
}

// expectEntries gets keys and compares with want; with extra, entries not in
// want (other circles' keys) are allowed.
func expectEntries(ctx context.Context, b sdk.Board, keys []string, want map[string][]byte, extra bool) error {
	resp, err := b.Get(ctx, sdk.GetRequest{Keys: keys})
	if err != nil {
		return fmt.Errorf("board get: %w", err)
	}
	seen := map[string]bool{}
	for _, en := range resp.Entries {
		w, ok := want[en.Key]
		switch {
		case !ok && !extra:
			return fmt.Errorf("unexpected key %q", en.Key)
		case !ok:
		case !bytes.Equal(en.Value, w):
			return fmt.Errorf("key %q: got %s, want %s", en.Key, short(en.Value), short(w))
		case seen[en.Key]:
			return fmt.Errorf("key %q listed twice", en.Key)
		}
		seen[en.Key] = true
	}
	for k := range want {
		if !seen[k] {
			return fmt.Errorf("key %q missing", k)
		}
	}
	return nil
}

func testDelete(e *env) {
	ch := e.channel(e.pub)
	del, ok := ch.(sdk.Deleter)
	if e.caps.Delete == sdk.DeleteNone || e.caps.Delete == "" {
		if !ok {
			return
		}
		ids := []string{"nonexistent"}
		resp, err := del.Delete(e.ctx, sdk.DeleteRequest{IDs: ids})
		if err == nil && !errors.Is(resp.Err(ids, ids[0]), sdk.ErrUnsupported) {
			e.t.Errorf("channel with Delete none: Delete returned %v, want sdk.ErrUnsupported", resp.Err(ids, ids[0]))
		} else if err != nil && !errors.Is(err, sdk.ErrUnsupported) {
			e.t.Errorf("channel with Delete none: Delete returned %v, want sdk.ErrUnsupported", err)
		}
		return
	}
	if !ok {
		e.t.Fatalf("Capabilities.Delete is %q but the channel does not implement sdk.Deleter", e.caps.Delete)
	}
	items := e.items(4)
	res := e.publish(ch, items)
	gone := []string{res[0].ID, res[1].ID}
	for round := range 2 { // deleting twice is fine
		resp, err := del.Delete(e.ctx, sdk.DeleteRequest{IDs: gone})
		if err != nil {
			e.t.Fatalf("Delete (round %d): %v", round+1, err)
		}
		if len(resp.Errors) != 0 && len(resp.Errors) != len(gone) {
			e.t.Fatalf("Delete (round %d): %d results in Errors for %d IDs (fill Failed instead)", round+1, len(resp.Errors), len(gone))
		}
		for _, id := range gone {
			if err := resp.Err(gone, id); err != nil {
				e.t.Errorf("Delete %q (round %d): %v", id, round+1, err)
			}
		}
	}
	s := e.subscribe(e.channel(e.sub), nil, 0)
	s.wait(datas(items[2:]))
	e.sleep(e.settle())
	s.stop()
	for i := range 2 {
		if n := s.c.times(items[i].Data); n > 0 {
			e.t.Errorf("deleted item %d (%s) was delivered to a new subscriber", i, gone[i])
		}
	}
}

func testLeaks(e *env) {
	// The harness and the first channel are up; everything the kit starts
	// from here must be gone after Close.
	e.closeAll()
	snapshot := goleak.IgnoreCurrent()
	e.readPast(nil, 2)
	if b, ok := e.channel(e.pub).(sdk.Board); ok && e.caps.Board {
		if err := b.Put(e.ctx, sdk.PutRequest{Key: key(), Value: e.payload(8)}); err != nil {
			e.t.Errorf("Put: %v", err)
		}
	}
	ch := e.channel(e.pub)
	e.closeAll()
	if _, err := ch.Publish(e.ctx, sdk.PublishRequest{Items: e.items(1)}); err == nil {
		e.t.Error("Publish after Close succeeded, want an error")
	}
	e.b.stop(e.t) // subprocess mode: the process and its client go away
	if err := goleak.Find(append([]goleak.Option{snapshot}, e.cfg.leak...)...); err != nil {
		e.t.Errorf("goroutines left after Close: %v", err)
	}
}
