package delivery

import (
	"context"
	"errors"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/remora-p2p/remora/sdk"
)

// Priority orders a channel's queue: lower goes first.
type Priority int

const (
	// PriorityControl is for acks and punch requests: small and urgent.
	PriorityControl Priority = iota
	// PriorityPresence is for presence records.
	PriorityPresence
	// PriorityBulk is for messages.
	PriorityBulk
	numPriorities
)

// Job is one item waiting for a channel.
type Job struct {
	Priority Priority
	// Replace, when set, drops a queued job with the same Replace key: a
	// newer presence record replaces one that has not gone out yet.
	Replace string
	Item    sdk.PublishItem
	// Done receives the item's result (also for a replaced job, with
	// ErrReplaced). It must not block.
	Done func(sdk.PublishResult)
}

// ErrReplaced is the result of a job replaced by a newer one.
var ErrReplaced = errors.New("delivery: replaced by a newer item")

// PublishFunc posts a batch to a channel (sdk.Channel.Publish).
type PublishFunc func(ctx context.Context, req sdk.PublishRequest) (sdk.PublishResponse, error)

// PacerOptions configure a Pacer. The zero value is usable.
type PacerOptions struct {
	// RateLimit is the channel's published limit; zero means none.
	RateLimit sdk.RateLimit
	// MaxBatch caps items per Publish (0: 64).
	MaxBatch int
	// Linger is how long to wait for more items before publishing a
	// partial batch of bulk items (0: publish at once).
	Linger time.Duration
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Pacer owns one channel's outgoing traffic: a token bucket fed by the
// service's published limit and by rate-limit errors, and priority queues.
// Core, not adapters, owns pacing.
type Pacer struct {
	opts    PacerOptions
	limiter *rate.Limiter

	mu          sync.Mutex
	queues      [numPriorities][]*Job
	pausedUntil time.Time
	wake        chan struct{}
}

// NewPacer returns a Pacer; call Run to drain it.
func NewPacer(opts PacerOptions) *Pacer {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 64
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	limit, burst := rate.Inf, 1
	if rl := opts.RateLimit; rl.Requests > 0 && rl.Per > 0 {
		limit = rate.Limit(float64(rl.Requests) / rl.Per.D().Seconds())
		burst = max(1, rl.Requests/10)
		// Each item costs a token (services count posts, not calls), so a
		// batch is never larger than the bucket can pay for at once.
		opts.MaxBatch = min(opts.MaxBatch, burst)
	}
	return &Pacer{opts: opts, limiter: rate.NewLimiter(limit, burst), wake: make(chan struct{}, 1)}
}

// Enqueue adds a job. It never blocks.
func (p *Pacer) Enqueue(j *Job) {
	p.mu.Lock()
	var replaced *Job
	if j.Replace != "" {
		for pr := range p.queues {
			q := p.queues[pr]
			for i, old := range q {
				if old.Replace == j.Replace {
					replaced = old
					p.queues[pr] = append(q[:i:i], q[i+1:]...)
					break
				}
			}
		}
	}
	p.queues[j.Priority] = append(p.queues[j.Priority], j)
	p.mu.Unlock()
	if replaced != nil && replaced.Done != nil {
		replaced.Done(sdk.PublishResult{Err: ErrReplaced})
	}
	p.poke()
}

// Len returns the number of queued jobs.
func (p *Pacer) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, q := range p.queues {
		n += len(q)
	}
	return n
}

func (p *Pacer) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// take removes the next batch: highest priority first, never mixing in
// lower priorities once a higher one filled it.
func (p *Pacer) take() []*Job {
	p.mu.Lock()
	defer p.mu.Unlock()
	var batch []*Job
	for pr := range p.queues {
		q := p.queues[pr]
		n := min(len(q), p.opts.MaxBatch-len(batch))
		batch = append(batch, q[:n]...)
		p.queues[pr] = q[n:]
		if len(batch) == p.opts.MaxBatch {
			break
		}
	}
	return batch
}

// requeue puts jobs back at the front of their queues, in order.
func (p *Pacer) requeue(jobs []*Job) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(jobs) - 1; i >= 0; i-- {
		j := jobs[i]
		p.queues[j.Priority] = append([]*Job{j}, p.queues[j.Priority]...)
	}
}

func (p *Pacer) pause(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if until := p.opts.Now().Add(d); until.After(p.pausedUntil) {
		p.pausedUntil = until
	}
}

func (p *Pacer) pausedFor() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pausedUntil.Sub(p.opts.Now())
}

func (p *Pacer) onlyBulk() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queues[PriorityControl]) == 0 && len(p.queues[PriorityPresence]) == 0 &&
		len(p.queues[PriorityBulk]) < p.opts.MaxBatch
}

// Run drains the queues into publish until ctx ends. Items that fail with a
// rate-limit error are requeued and the channel paused for the retry-after;
// other per-item errors go to the job's Done. A call-level error that is
// retryable (sdk.Code.Retryable) requeues the whole batch and backs off; an
// unclassified one (CodeUnknown) does so at most sdk.MaxUnknownRetries
// times in a row; any other fails every job of the batch.
func (p *Pacer) Run(ctx context.Context, publish PublishFunc) error {
	backoff := time.Duration(0)
	unknown := 0 // call-level CodeUnknown errors in a row
	for {
		if d := p.pausedFor(); d > 0 {
			if err := sdk.Sleep(ctx, d); err != nil {
				return err
			}
		}
		if p.Len() == 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-p.wake:
			}
			continue
		}
		if p.opts.Linger > 0 && p.onlyBulk() {
			if err := sdk.Sleep(ctx, p.opts.Linger); err != nil {
				return err
			}
		}
		if err := p.limiter.Wait(ctx); err != nil {
			return ctx.Err()
		}
		batch := p.take()
		if len(batch) == 0 {
			continue
		}
		if len(batch) > 1 {
			if err := p.limiter.WaitN(ctx, len(batch)-1); err != nil {
				p.requeue(batch)
				return ctx.Err()
			}
		}
		req := sdk.PublishRequest{Items: make([]sdk.PublishItem, len(batch))}
		for i, j := range batch {
			req.Items[i] = j.Item
		}
		resp, err := publish(ctx, req)
		if err == nil && len(resp.Results) != len(batch) {
			err = sdk.Errorf(sdk.CodeUnknown, "adapter returned %d results for %d items", len(resp.Results), len(batch))
		}
		if err != nil {
			if ctx.Err() != nil {
				p.requeue(batch)
				return ctx.Err()
			}
			// A call-level error the adapter says will not pass (bad config,
			// auth, an invalid request), or an unclassified one that keeps
			// coming back, fails the batch: retrying it forever would only
			// hide it.
			code := sdk.CodeOf(err)
			if code == sdk.CodeUnknown {
				unknown++
			}
			if (!code.Retryable() && code != sdk.CodeUnknown) || unknown >= sdk.MaxUnknownRetries {
				unknown = 0
				for _, j := range batch {
					if j.Done != nil {
						j.Done(sdk.PublishResult{Err: err})
					}
				}
				continue
			}
			p.requeue(batch)
			if ra := sdk.RetryAfterOf(err); ra > 0 {
				p.pause(ra)
				continue
			}
			backoff = min(max(2*backoff, 100*time.Millisecond), 30*time.Second)
			p.pause(backoff)
			continue
		}
		backoff, unknown = 0, 0
		var again []*Job
		for i, res := range resp.Results {
			if errors.Is(res.Err, sdk.ErrRateLimited) || errors.Is(res.Err, sdk.ErrUnavailable) {
				again = append(again, batch[i])
				p.pause(max(sdk.RetryAfterOf(res.Err), 100*time.Millisecond))
				continue
			}
			if batch[i].Done != nil {
				batch[i].Done(res)
			}
		}
		p.requeue(again)
	}
}
