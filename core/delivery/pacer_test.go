package delivery

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/remora-p2p/remora/sdk"
)

// recorder is a channel's Publish that records batches and can fail items.
type recorder struct {
	mu      sync.Mutex
	batches [][]string
	fail    func(call int, key string) error // per item
	callErr func(call int) error
	calls   int
}

func (r *recorder) publish(ctx context.Context, req sdk.PublishRequest) (sdk.PublishResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.callErr != nil {
		if err := r.callErr(r.calls); err != nil {
			return sdk.PublishResponse{}, err
		}
	}
	var keys []string
	resp := sdk.PublishResponse{}
	for _, it := range req.Items {
		var err error
		if r.fail != nil {
			err = r.fail(r.calls, it.IdempotencyKey)
		}
		if err == nil {
			keys = append(keys, it.IdempotencyKey)
		}
		resp.Results = append(resp.Results, sdk.PublishResult{ID: it.IdempotencyKey, Err: err})
	}
	r.batches = append(r.batches, keys)
	return resp, nil
}

type results struct {
	mu   sync.Mutex
	errs map[string]error
	done chan string
}

func newResults() *results { return &results{errs: map[string]error{}, done: make(chan string, 1000)} }

func (rs *results) job(p Priority, key, replace string) *Job {
	return &Job{Priority: p, Replace: replace, Item: sdk.PublishItem{IdempotencyKey: key}, Done: func(res sdk.PublishResult) {
		rs.mu.Lock()
		rs.errs[key] = res.Err
		rs.mu.Unlock()
		rs.done <- key
	}}
}

func (rs *results) wait(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		select {
		case <-rs.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of %d results arrived", i, n)
		}
	}
}

func run(t *testing.T, p *Pacer, r *recorder) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx, r.publish) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v, want context.Canceled", err)
		}
	})
}

func TestPriorityAndReplace(t *testing.T) {
	p := NewPacer(PacerOptions{MaxBatch: 10})
	rs := newResults()
	// Queue before running, so order is decided by priority alone.
	p.Enqueue(rs.job(PriorityBulk, "m1", ""))
	p.Enqueue(rs.job(PriorityPresence, "p-old", "presence/c1"))
	p.Enqueue(rs.job(PriorityBulk, "m2", ""))
	p.Enqueue(rs.job(PriorityControl, "ack1", ""))
	p.Enqueue(rs.job(PriorityPresence, "p-new", "presence/c1"))
	r := &recorder{}
	run(t, p, r)
	rs.wait(t, 5)
	if !errors.Is(rs.errs["p-old"], ErrReplaced) {
		t.Errorf("old presence: %v, want ErrReplaced", rs.errs["p-old"])
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	want := "[[ack1 p-new m1 m2]]"
	if got := fmt.Sprint(r.batches); got != want {
		t.Errorf("batches %s, want %s", got, want)
	}
}

func TestRateLimitedItemsAreRetried(t *testing.T) {
	p := NewPacer(PacerOptions{MaxBatch: 4})
	rs := newResults()
	r := &recorder{fail: func(call int, key string) error {
		if call == 1 && key == "b" {
			return sdk.RateLimited(50*time.Millisecond, "slow down")
		}
		return nil
	}}
	for _, k := range []string{"a", "b", "c"} {
		p.Enqueue(rs.job(PriorityBulk, k, ""))
	}
	run(t, p, r)
	rs.wait(t, 3)
	for k, err := range rs.errs {
		if err != nil {
			t.Errorf("%s: %v, want success after retry", k, err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if got, want := fmt.Sprint(r.batches), "[[a c] [b]]"; got != want {
		t.Errorf("batches %s, want %s", got, want)
	}
}

func TestCallErrorRequeuesBatch(t *testing.T) {
	p := NewPacer(PacerOptions{})
	rs := newResults()
	r := &recorder{callErr: func(call int) error {
		if call < 3 {
			return sdk.Errorf(sdk.CodeUnavailable, "server down")
		}
		return nil
	}}
	p.Enqueue(rs.job(PriorityBulk, "x", ""))
	run(t, p, r)
	rs.wait(t, 1)
	if err := rs.errs["x"]; err != nil {
		t.Fatalf("x: %v", err)
	}
	if r.calls != 3 {
		t.Errorf("%d calls, want 3 (two failures, then success)", r.calls)
	}
}

// TestCallErrorNotRetriedForever: a call-level error that will not pass
// fails the batch at once; an unclassified one after sdk.MaxUnknownRetries
// calls. (Before, both were retried forever: a bad configuration that an
// adapter reported with fmt.Errorf kept the queue busy for good.)
func TestCallErrorNotRetriedForever(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		calls int
	}{
		{"bad config", sdk.Errorf(sdk.CodeBadConfig, "no such field"), 1},
		{"invalid argument", sdk.Errorf(sdk.CodeInvalidArgument, "bad key"), 1},
		{"unknown", errors.New("something the adapter did not classify"), sdk.MaxUnknownRetries},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewPacer(PacerOptions{})
			rs := newResults()
			r := &recorder{callErr: func(int) error { return tt.err }}
			p.Enqueue(rs.job(PriorityBulk, "x", ""))
			run(t, p, r)
			rs.wait(t, 1)
			rs.mu.Lock()
			got := rs.errs["x"]
			rs.mu.Unlock()
			if got == nil || got.Error() != tt.err.Error() {
				t.Fatalf("x: %v, want %v", got, tt.err)
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.calls != tt.calls {
				t.Errorf("%d calls, want %d", r.calls, tt.calls)
			}
		})
	}
}

func TestPermanentItemErrorReported(t *testing.T) {
	p := NewPacer(PacerOptions{})
	rs := newResults()
	r := &recorder{fail: func(int, string) error { return sdk.Errorf(sdk.CodeTooLarge, "too big") }}
	p.Enqueue(rs.job(PriorityBulk, "big", ""))
	run(t, p, r)
	rs.wait(t, 1)
	if !errors.Is(rs.errs["big"], sdk.ErrTooLarge) {
		t.Fatalf("big: %v, want ErrTooLarge", rs.errs["big"])
	}
}

func TestPublishedRateLimitSpacesCalls(t *testing.T) {
	// 10 requests per second with burst 1: 4 single-item batches need about 300 ms.
	p := NewPacer(PacerOptions{MaxBatch: 1, RateLimit: sdk.RateLimit{Requests: 10, Per: sdk.Duration(time.Second)}})
	rs := newResults()
	for i := range 4 {
		p.Enqueue(rs.job(PriorityBulk, fmt.Sprint(i), ""))
	}
	start := time.Now()
	r := &recorder{}
	run(t, p, r)
	rs.wait(t, 4)
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Fatalf("4 calls at 10/s took %s: the bucket did not pace", el)
	}
}

func TestPublishedRateLimitCountsItems(t *testing.T) {
	// 20 items per second, burst 2: 8 items in batches of at most 2 need
	// about 300 ms however they are batched.
	p := NewPacer(PacerOptions{MaxBatch: 64, RateLimit: sdk.RateLimit{Requests: 20, Per: sdk.Duration(time.Second)}})
	rs := newResults()
	for i := range 8 {
		p.Enqueue(rs.job(PriorityBulk, fmt.Sprint(i), ""))
	}
	start := time.Now()
	r := &recorder{}
	run(t, p, r)
	rs.wait(t, 8)
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Fatalf("8 items at 20/s took %s: the bucket counted calls, not items", el)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range r.batches {
		if len(b) > 2 {
			t.Fatalf("batch of %d items, larger than the bucket's burst of 2", len(b))
		}
	}
}
