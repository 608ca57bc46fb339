package git

import (
	"context"
	"errors"
	"fmt"

	"github.com/remora-p2p/remora/sdk"
)

// Compacter is implemented by git channels: see Compact.
type Compacter interface {
	Compact(ctx context.Context) error
}

// Compact squashes ch's own ref to one parentless commit holding its
// current retained files (expired log buckets pruned), and force-pushes it.
// Other members see the rewrite as CodeCursorInvalid and rescan; their
// dedupe drops what they already had. ch must be a git channel.
func Compact(ctx context.Context, ch sdk.Channel) error {
	c, ok := ch.(Compacter)
	if !ok {
		return sdk.Errorf(sdk.CodeUnsupported, "git: compact: %T is not a git channel", ch)
	}
	return c.Compact(ctx)
}

func (c *channel) Compact(ctx context.Context) error {
	if c.closed() {
		return errClosed
	}
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	c.synced = false // squash what the remote has, not a stale view
	if err := c.commitAndPush(ctx, nil, true); err != nil {
		if errors.Is(err, errRewritten) {
			return sdk.Errorf(sdk.CodeUnavailable, "git: compact: %w", err)
		}
		return fmt.Errorf("git: compact: %w", err)
	}
	return nil
}

// Delete removes own log items (delete scope own); IDs of other members'
// items fail with CodeUnsupported. Items already gone are success.
func (c *channel) Delete(ctx context.Context, req sdk.DeleteRequest) (sdk.DeleteResponse, error) {
	if c.closed() {
		return sdk.DeleteResponse{}, errClosed
	}
	res := sdk.DeleteResponse{Errors: make([]error, len(req.IDs))}
	waits := make([]chan error, len(req.IDs))
	for i, id := range req.IDs {
		m, b, k, err := parseItemID(id)
		if err != nil {
			res.Errors[i] = sdk.Errorf(sdk.CodeNotFound, "%s", err.Error())
			continue
		}
		if m != c.member {
			res.Errors[i] = sdk.Errorf(sdk.CodeUnsupported, "git: delete %s: a member can delete only its own items (delete scope own)", id)
			continue
		}
		waits[i] = c.enqueue(logPath(b, k), nil)
	}
	c.kickFlusher()
	for i, ch := range waits {
		if ch != nil {
			if err := wait(ctx, c.stop, ch); err != nil {
				res.Errors[i] = fmt.Errorf("git: delete %s: %w", req.IDs[i], err)
			}
		}
	}
	return res, nil
}
