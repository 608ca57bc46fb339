package sdk

import (
	"context"
	"time"
)

// Sleep waits d, or until ctx ends, when it returns ctx's error. Adapters
// use it for poll intervals and retry-after waits so that Close and
// cancellation are never stuck behind a timer.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
