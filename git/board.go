package git

import (
	"context"
	"fmt"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/remora-p2p/remora/sdk"
)

// Put writes board/<key> on the own ref through the flusher and returns
// once it is pushed.
func (c *channel) Put(ctx context.Context, req sdk.PutRequest) error {
	ctx, end, err := c.begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	if err := sdk.CheckKey("board key", req.Key); err != nil {
		return fmt.Errorf("git: put: %w", err)
	}
	if len(req.Value) > c.cfg.MaxPayload {
		return sdk.Errorf(sdk.CodeTooLarge, "git: put: value has %d bytes, max_payload is %d", len(req.Value), c.cfg.MaxPayload)
	}
	ch := c.enqueue(boardPath(req.Key), append([]byte{}, req.Value...))
	c.kickFlusher()
	if err := wait(ctx, ch); err != nil {
		return fmt.Errorf("git: put: %w", err)
	}
	return nil
}

// Get fetches and returns the latest value per key over all members' refs;
// "latest" is by the commit that last changed the value.
func (c *channel) Get(ctx context.Context, req sdk.GetRequest) (sdk.GetResponse, error) {
	ctx, end, err := c.begin(ctx)
	if err != nil {
		return sdk.GetResponse{}, err
	}
	defer end()
	c.mu.Lock()
	defer c.mu.Unlock()
	refs, err := c.fetchLocked(ctx)
	if err != nil {
		return sdk.GetResponse{}, err
	}
	want := map[string]bool{}
	for _, k := range req.Keys {
		want[k] = true
	}
	best := map[string]sdk.BoardEntry{}
	s := c.repo.Storer
	for _, m := range sortedKeys(refs) {
		commit, err := object.GetCommit(s, refs[m])
		if err != nil {
			c.health.add("ignored_foreign", 1)
			continue
		}
		bt, err := subtree(s, commit.TreeHash, boardDir)
		if err != nil {
			continue
		}
		entries, err := readTree(s, bt)
		if err != nil {
			continue
		}
		for _, e := range entries {
			key, err := parseBoardName(e.Name)
			if err != nil || !e.Mode.IsFile() {
				c.health.add("ignored_foreign", 1)
				continue
			}
			if len(want) > 0 && !want[key] {
				continue
			}
			at := c.lastChange(commit, boardDir+"/"+e.Name, e.Hash)
			if old, ok := best[key]; ok && !at.After(old.Time) {
				continue
			}
			v, err := readBlob(s, e.Hash, c.cfg.MaxPayload)
			if err != nil {
				c.health.add("ignored_oversized", 1)
				continue
			}
			best[key] = sdk.BoardEntry{Key: key, Value: v, Time: at}
		}
	}
	var res sdk.GetResponse
	for _, k := range sortedKeys(best) {
		res.Entries = append(res.Entries, best[k])
	}
	return res, nil
}

// lastChange walks first parents from tip while path still holds blob h
// and returns the committer time of the oldest such commit.
func (c *channel) lastChange(tip *object.Commit, path string, h plumbing.Hash) time.Time {
	at := tip.Committer.When
	cur := tip
	for range maxBoardHistory {
		if len(cur.ParentHashes) == 0 {
			break
		}
		parent, err := object.GetCommit(c.repo.Storer, cur.ParentHashes[0])
		if err != nil {
			break
		}
		t, err := parent.Tree()
		if err != nil {
			break
		}
		e, err := t.FindEntry(path)
		if err != nil || e.Hash != h {
			break
		}
		at, cur = parent.Committer.When, parent
	}
	return at
}
