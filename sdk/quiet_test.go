package sdk_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/remora-p2p/remora/sdk"
)

// quietClock is a manual clock whose scheduled summaries run on fire.
type quietClock struct {
	mu      sync.Mutex
	now     time.Time
	pending []func()
}

func (c *quietClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *quietClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending = append(c.pending, f)
	return func() bool { return false }
}

// advance moves the clock and runs the summaries that were scheduled.
func (c *quietClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	fs := c.pending
	c.pending = nil
	c.mu.Unlock()
	for _, f := range fs {
		f()
	}
}

func lines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("bad log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	buf.Reset()
	return out
}

func TestQuietHandler(t *testing.T) {
	var buf bytes.Buffer
	clk := &quietClock{now: time.Unix(1e9, 0)}
	h := sdk.NewQuietHandler(slog.NewJSONHandler(&buf, nil), sdk.QuietOptions{
		Period: time.Minute, Distinct: 3, Forget: time.Hour, Now: clk.Now, AfterFunc: clk.AfterFunc})
	log := slog.New(h).With("channel", "c1")

	// The same warning about the same file, every poll: written once.
	for range 1000 {
		log.Warn("skipping a file larger than max_payload", "id", "b/k1", "size", 8<<20)
	}
	if got := lines(t, &buf); len(got) != 1 || got[0]["id"] != "b/k1" || got[0]["channel"] != "c1" {
		t.Fatalf("1000 identical warnings wrote %d lines, want 1 with its attributes: %v", len(got), got)
	}
	// The same warning about 1000 different files: Distinct written (one
	// was already this period), the rest counted.
	for i := range 1000 {
		log.Warn("skipping a file larger than max_payload", "id", fmt.Sprintf("b/x%d", i), "size", 8<<20)
	}
	if got := lines(t, &buf); len(got) != 2 {
		t.Fatalf("1000 distinct warnings with one message wrote %d lines in the period, want 2 (Distinct 3, one used)", len(got))
	}
	// Other messages and other channels have their own budget.
	log.Warn("another cause")
	slog.New(h).With("channel", "c2").Warn("skipping a file larger than max_payload", "id", "b/k1")
	if got := lines(t, &buf); len(got) != 2 {
		t.Fatalf("a new message and another channel's warning: %d lines, want 2", len(got))
	}

	// At the end of the period: one summary with the count.
	clk.advance(time.Minute)
	got := lines(t, &buf)
	if len(got) != 1 {
		t.Fatalf("summary: %d lines, want 1: %v", len(got), got)
	}
	s := got[0]
	if s["msg"] != "skipping a file larger than max_payload" || s["suppressed"] != float64(999+998) || s["level"] != "WARN" || s["channel"] != "c1" {
		t.Fatalf("summary = %v, want the message, its level, its channel and suppressed=1997", s)
	}

	// Next period: the remembered record stays quiet, new ones get a fresh
	// budget; nothing held back means no summary.
	log.Warn("skipping a file larger than max_payload", "id", "b/k1", "size", 8<<20)
	log.Warn("skipping a file larger than max_payload", "id", "b/new", "size", 8<<20)
	if got := lines(t, &buf); len(got) != 1 || got[0]["id"] != "b/new" {
		t.Fatalf("next period: %v, want only b/new", got)
	}
	clk.advance(time.Minute)
	if got := lines(t, &buf); len(got) != 1 || got[0]["suppressed"] != float64(1) {
		t.Fatalf("second summary: %v, want suppressed=1", got)
	}
	clk.advance(time.Minute)
	if got := lines(t, &buf); len(got) != 0 {
		t.Fatalf("a quiet period wrote %v, want nothing", got)
	}

	// After Forget the same record is written again: the state still
	// holds, and the log says so once an hour.
	clk.advance(time.Hour)
	log.Warn("skipping a file larger than max_payload", "id", "b/k1", "size", 8<<20)
	if got := lines(t, &buf); len(got) != 1 {
		t.Fatalf("after Forget: %d lines, want 1", len(got))
	}
}

// TestQuietHandlerBounded: a flood of distinct records keeps the log and the
// handler's memory bounded.
func TestQuietHandlerBounded(t *testing.T) {
	var buf bytes.Buffer
	clk := &quietClock{now: time.Unix(1e9, 0)}
	log := slog.New(sdk.NewQuietHandler(slog.NewJSONHandler(&buf, nil), sdk.QuietOptions{Remember: 64, Now: clk.Now, AfterFunc: clk.AfterFunc}))
	for i := range 100000 {
		log.Warn("junk", "id", i)
		if i%1000 == 0 {
			clk.advance(time.Minute)
		}
	}
	n := len(lines(t, &buf))
	// 10 per period plus a summary: 101 periods.
	if n > 101*11 {
		t.Fatalf("100,000 distinct warnings over 100 minutes wrote %d lines, want at most %d", n, 101*11)
	}
	t.Logf("100,000 distinct warnings over 100 minutes: %d lines", n)
}

// TestQuietHandlerPassesSummaries: the host re-emits an adapter's summary
// line through its own quiet handler, which must write it, not count it.
func TestQuietHandlerPassesSummaries(t *testing.T) {
	var buf bytes.Buffer
	clk := &quietClock{now: time.Unix(1e9, 0)}
	log := slog.New(sdk.NewQuietHandler(slog.NewJSONHandler(&buf, nil), sdk.QuietOptions{Distinct: 1, Now: clk.Now, AfterFunc: clk.AfterFunc}))
	log.Warn("skipping", "file", "a")
	for i := range 5 {
		log.Warn("skipping", "file", "x", "suppressed", 26+i, "period", "1m0s")
	}
	if got := lines(t, &buf); len(got) != 6 {
		t.Fatalf("%d lines, want the first record and all 5 summaries", len(got))
	}
}
