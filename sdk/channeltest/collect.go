package channeltest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/remora-p2p/remora/sdk"
)

// errStopped is what the collector's sink returns once it has accepted its
// limit: the subscription is over, as when the host stops accepting.
var errStopped = errors.New("channeltest: collector stopped accepting")

// collector is the sink of one subscription. It dedupes deliveries by
// payload, counts duplicates and foreign items, and remembers the cursor of
// the last accepted delivery.
type collector struct {
	known *payloads // the case's payloads

	mu       sync.Mutex
	count    map[string]int    // deliveries per payload
	ids      map[string]string // delivery ID per payload
	order    []string          // payloads in first-delivery order
	accepted int               // deliveries of known payloads, duplicates included
	limit    int               // stop after this many distinct known payloads (0: never)
	cursor   []byte            // cursor of the last accepted delivery
	foreign  int               // deliveries whose data is not one of ours
	skipped  int               // deliveries with empty data (cursor moves only)
	problems []string          // contract violations seen in Deliver
	stopped  bool
	stop     context.CancelFunc
	changed  chan struct{}
}

func newCollector(known *payloads, limit int, stop context.CancelFunc) *collector {
	return &collector{
		known:   known,
		count:   map[string]int{},
		ids:     map[string]string{},
		limit:   limit,
		stop:    stop,
		changed: make(chan struct{}, 1),
	}
}

func (c *collector) Deliver(ctx context.Context, d sdk.Delivery) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errStopped
	}
	if len(d.Cursor) == 0 {
		c.problems = append(c.problems, fmt.Sprintf("delivery %q has no cursor", d.ID))
	}
	switch ok := c.known.has(d.Data); {
	case len(d.Data) == 0:
		c.skipped++
	case !ok:
		c.foreign++
	default:
		k := string(d.Data)
		if d.ID == "" {
			c.problems = append(c.problems, fmt.Sprintf("delivery of %s has no ID", short(d.Data)))
		}
		if c.count[k] == 0 {
			c.order = append(c.order, k)
			c.ids[k] = d.ID
		}
		c.count[k]++
		c.accepted++
	}
	if len(d.Cursor) > 0 {
		c.cursor = append([]byte(nil), d.Cursor...)
	}
	if c.limit > 0 && len(c.order) >= c.limit {
		c.stopped = true
		c.stop()
	}
	select {
	case c.changed <- struct{}{}:
	default:
	}
	return nil
}

// missing returns how many of want have not arrived.
func (c *collector) missing(want [][]byte) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, w := range want {
		if c.count[string(w)] == 0 {
			n++
		}
	}
	return n
}

// times returns how often data was delivered.
func (c *collector) times(data []byte) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count[string(data)]
}

// duplicates returns the number of deliveries beyond the first, over all payloads.
func (c *collector) duplicates() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.accepted - len(c.order)
}

func (c *collector) lastCursor() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cursor
}

func (c *collector) delivered() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.order...)
}

func (c *collector) summary() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprintf("%d distinct items, %d duplicates, %d foreign, %d skip-only", len(c.order), c.accepted-len(c.order), c.foreign, c.skipped)
}

// subscription is one running Subscribe call feeding a collector.
type subscription struct {
	e      *env
	c      *collector
	cancel context.CancelFunc
	done   chan struct{}
	err    error // Subscribe's result, valid after done
}

// subscribe starts Subscribe on ch from cursor. With limit > 0 the
// subscription stops itself after limit distinct items of the case.
func (e *env) subscribe(ch sdk.Channel, cursor []byte, limit int) *subscription {
	ctx, cancel := context.WithCancel(e.ctx)
	s := &subscription{e: e, cancel: cancel, done: make(chan struct{})}
	s.c = newCollector(e.published, limit, cancel)
	go func() {
		defer close(s.done)
		s.err = ch.Subscribe(ctx, sdk.SubscribeRequest{Cursor: cursor}, s.c)
	}()
	e.t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(prompt):
			e.t.Errorf("Subscribe still running %v after its context was cancelled", prompt)
		}
	})
	return s
}

// readPast publishes n items, reads them with a subscription from cursor
// and returns the cursor after them.
func (e *env) readPast(cursor []byte, n int) []byte {
	e.t.Helper()
	items := e.items(n)
	e.publish(e.channel(e.pub), items)
	s := e.subscribe(e.channel(e.sub), cursor, 0)
	s.wait(datas(items))
	s.stop()
	return s.c.lastCursor()
}

// wait blocks until every payload in want was delivered, failing the case
// at its deadline or if Subscribe returns first.
func (s *subscription) wait(want [][]byte) {
	s.e.t.Helper()
	for {
		if s.c.missing(want) == 0 {
			return
		}
		select {
		case <-s.c.changed:
		case <-s.done:
			if s.c.missing(want) == 0 {
				return
			}
			s.e.t.Fatalf("Subscribe returned %v with %d of %d items missing (%s)", s.err, s.c.missing(want), len(want), s.c.summary())
		case <-s.e.ctx.Done():
			s.e.t.Fatalf("timed out with %d of %d items missing (%s)", s.c.missing(want), len(want), s.c.summary())
		}
	}
}

// waitStopped waits until the subscription ended by its own limit.
func (s *subscription) waitStopped() {
	s.e.t.Helper()
	select {
	case <-s.done:
	case <-s.e.ctx.Done():
		s.e.t.Fatalf("timed out waiting for the subscription to take its items (%s)", s.c.summary())
	}
}

// stop cancels the subscription, requires Subscribe to return promptly with
// nil or a context error, and checks what the sink saw.
func (s *subscription) stop() {
	s.e.t.Helper()
	s.cancel()
	select {
	case <-s.done:
	case <-time.After(prompt):
		s.e.t.Fatalf("Subscribe did not return within %v after its context was cancelled", prompt)
	}
	if s.err != nil && !errors.Is(s.err, context.Canceled) && !errors.Is(s.err, errStopped) {
		s.e.t.Errorf("Subscribe after cancel: got %v, want nil or context.Canceled", s.err)
	}
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	for _, p := range s.c.problems {
		s.e.t.Errorf("delivery: %s", p)
	}
	if s.c.foreign > 0 {
		s.e.t.Logf("subscription saw %d items that this case did not publish (ignored)", s.c.foreign)
	}
}
