package git

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

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
	ctx, end, err := c.begin(ctx)
	if err != nil {
		return err
	}
	defer end()
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
	ctx, end, err := c.begin(ctx)
	if err != nil {
		return sdk.DeleteResponse{}, err
	}
	defer end()
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
			if err := wait(ctx, ch); err != nil {
				res.Errors[i] = fmt.Errorf("git: delete %s: %w", req.IDs[i], err)
			}
		}
	}
	return res, nil
}

// CompactConfig compacts the own ref of the channel that req configures,
// without touching req.StateDir's clone: it reads the member name from the
// state dir and works in a scratch clone, so `remora channel compact NAME`
// can run while the daemon's instance of the channel is up (that instance
// sees its ref rewritten at its next push and rebases onto it).
func CompactConfig(ctx context.Context, req sdk.ConfigureRequest) error {
	cfg, err := parseConfig(req.Config)
	if err != nil {
		return err
	}
	if cfg.Member == "" {
		if req.StateDir == "" {
			return sdk.Errorf(sdk.CodeBadConfig, "git: compact: no state dir and no member name: nothing to compact")
		}
		if _, err := os.Stat(filepath.Join(req.StateDir, "member")); err != nil {
			return sdk.Errorf(sdk.CodeNotFound, "git: compact: %s has no member name yet: this device never published on the channel", req.StateDir)
		}
		if cfg.Member, err = memberID("", req.StateDir); err != nil {
			return err
		}
	}
	raw, err := withMember(req.Config, cfg.Member)
	if err != nil {
		return err
	}
	scratch, err := os.MkdirTemp("", "remora-git-compact-")
	if err != nil {
		return fmt.Errorf("git: compact: %w", err)
	}
	defer os.RemoveAll(scratch)
	req.Config, req.StateDir = raw, scratch
	ch, err := New().Configure(ctx, req)
	if err != nil {
		return err
	}
	defer ch.Close()
	return Compact(ctx, ch)
}

// withMember returns raw with "member" set.
func withMember(raw json.RawMessage, member string) (json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, sdk.Errorf(sdk.CodeBadConfig, "git: config: %v", err)
	}
	b, _ := json.Marshal(member)
	m["member"] = b
	out, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("git: config: %w", err)
	}
	return out, nil
}
