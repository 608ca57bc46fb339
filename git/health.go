package git

import (
	"context"
	"sync"

	"github.com/remora-p2p/remora/sdk"
)

type health struct {
	mu       sync.Mutex
	counters map[string]int64
	lastErr  error
}

func (h *health) add(k string, n int64) {
	h.mu.Lock()
	h.counters[k] += n
	h.mu.Unlock()
}

func (h *health) setGauge(k string, n int64) {
	h.mu.Lock()
	h.counters[k] = n
	h.mu.Unlock()
}

func (h *health) set(err error) {
	h.mu.Lock()
	h.lastErr = err
	h.mu.Unlock()
}

// Health reports the last remote error and the counters: ignored_foreign
// (files, entries and refs not in the layout), ignored_oversized,
// skipped_expired, ignored_refs (names that are no member names),
// ignored_nocommit_refs (refs to blobs, trees, tags), fetch_errors,
// push_retries, commits,
// pushed_items, pruned_buckets, cursor_invalid, refused_refs (member refs
// left out because their new commits bring more than max_fetch_bytes).
func (c *channel) Health(ctx context.Context) sdk.Health {
	c.health.mu.Lock()
	defer c.health.mu.Unlock()
	h := sdk.Health{State: sdk.HealthOK, Message: "ok", Counters: map[string]int64{}}
	for k, v := range c.health.counters {
		h.Counters[k] = v
	}
	c.qmu.Lock()
	h.Counters["queued"] = int64(len(c.pending))
	c.qmu.Unlock()
	if err := c.health.lastErr; err != nil {
		h.State, h.Message = sdk.HealthDegraded, err.Error()
		if code := sdk.CodeOf(err); code == sdk.CodeAuthFailed || code == sdk.CodeBadConfig || code == sdk.CodeNotFound {
			h.State = sdk.HealthDown
		}
	}
	if note := c.refusedSnapshot(); note != "" {
		if h.State == sdk.HealthOK {
			h.State, h.Message = sdk.HealthDegraded, note
		} else {
			h.Message += "; " + note
		}
	}
	return h
}

var (
	_ sdk.Board    = (*channel)(nil)
	_ sdk.Deleter  = (*channel)(nil)
	_ sdk.Healther = (*channel)(nil)
)
