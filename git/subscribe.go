package git

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/remora-p2p/remora/sdk"
)

// Subscribe fetches the namespace every poll interval (PollMin, doubling
// towards PollMax while nothing new arrives, jittered) and delivers the log
// files each member ref gained since the cursor, in path order (bucket,
// then key). A cursor ref that was deleted or rewritten (force push,
// Compact) is CodeCursorInvalid.
func (c *channel) Subscribe(ctx context.Context, req sdk.SubscribeRequest, sink sdk.Sink) error {
	ctx, end, err := c.begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	cur, err := decodeCursor(req.Cursor)
	if err != nil {
		c.health.add("cursor_invalid", 1)
		return sdk.Errorf(sdk.CodeCursorInvalid, "git: subscribe: %w", err)
	}
	interval := c.cfg.PollMin.D()
	for {
		c.mu.Lock()
		refs, err := c.fetchLocked(ctx)
		c.mu.Unlock()
		n := 0
		switch {
		case ctx.Err() != nil:
			return ended(ctx)
		case err != nil && sdk.CodeOf(err) != sdk.CodeUnavailable:
			return err
		case err != nil:
			c.log.Warn("git: fetch failed; retrying", "err", err)
		default:
			n, err = c.deliver(ctx, cur, refs, sink)
			if err != nil {
				if ctx.Err() != nil {
					return ended(ctx)
				}
				return err
			}
		}
		if n > 0 {
			interval = c.cfg.PollMin.D()
		} else {
			interval = min(2*interval, c.cfg.PollMax.D())
		}
		select {
		case <-ctx.Done():
			return ended(ctx)
		case <-time.After(jitter(interval)):
		}
	}
}

// item is one file to deliver.
type item struct {
	path string
	hash plumbing.Hash
}

// deliver sends what refs gained since cur and advances cur; it returns
// how many deliveries (with data) it made.
func (c *channel) deliver(ctx context.Context, cur cursor, refs map[string]plumbing.Hash, sink sdk.Sink) (int, error) {
	for _, m := range sortedKeys(cur) {
		if _, ok := refs[m]; !ok {
			c.health.add("cursor_invalid", 1)
			return 0, sdk.Errorf(sdk.CodeCursorInvalid, "git: subscribe: member ref %s was deleted; resubscribe from the start", m)
		}
	}
	n := 0
	bad := int64(0)
	for _, m := range sortedKeys(refs) {
		tip := refs[m]
		pos, known := cur[m]
		if known && pos.Target.IsZero() && pos.Done == tip {
			continue
		}
		c.mu.Lock()
		_, err := object.GetCommit(c.repo.Storer, tip)
		c.mu.Unlock()
		if err != nil { // a ref to a blob, tree or tag: not a member's
			bad++
			if known {
				c.health.add("cursor_invalid", 1)
				return n, sdk.Errorf(sdk.CodeCursorInvalid, "git: subscribe: member ref %s no longer points to a commit; resubscribe from the start", m)
			}
			continue
		}
		k, err := c.deliverRef(ctx, cur, m, pos, tip, sink)
		n += k
		if err != nil {
			return n, err
		}
	}
	c.health.setGauge("ignored_nocommit_refs", bad)
	return n, nil
}

// deliverRef delivers member m's ref from pos to tip.
func (c *channel) deliverRef(ctx context.Context, cur cursor, m string, pos refPos, tip plumbing.Hash, sink sdk.Sink) (int, error) {
	invalid := func(why string) error {
		c.health.add("cursor_invalid", 1)
		return sdk.Errorf(sdk.CodeCursorInvalid, "git: subscribe: member ref %s was %s; resubscribe from the start", m, why)
	}
	c.mu.Lock()
	ok, err := c.isAncestor(pos.Done, tip)
	if err == nil && ok && !pos.Target.IsZero() {
		ok, err = c.isAncestor(pos.Target, tip)
	}
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, invalid("rewritten (force push or compact)")
	}
	n := 0
	// finish an interrupted step first, then go to the tip
	steps := []struct {
		from, to plumbing.Hash
		after    string
	}{{pos.Done, tip, ""}}
	if !pos.Target.IsZero() {
		steps = []struct {
			from, to plumbing.Hash
			after    string
		}{{pos.Done, pos.Target, pos.After}, {pos.Target, tip, ""}}
	}
	for _, st := range steps {
		if st.from == st.to {
			continue
		}
		c.mu.Lock()
		items, at, err := c.added(st.from, st.to, st.after)
		c.mu.Unlock()
		if err != nil {
			return n, err
		}
		if len(items) == 0 {
			// nothing to deliver: just move the cursor past this step
			cur[m] = refPos{Done: st.to}
			if err := sink.Deliver(ctx, sdk.Delivery{Cursor: cur.encode(), Time: at}); err != nil {
				return n, err
			}
			continue
		}
		for i, it := range items {
			c.mu.Lock()
			data, err := readBlob(c.repo.Storer, it.hash, c.cfg.MaxPayload)
			c.mu.Unlock()
			if err != nil {
				return n, err // checked in added; a failure here is local storage
			}
			if i == len(items)-1 {
				cur[m] = refPos{Done: st.to}
			} else {
				cur[m] = refPos{Done: st.from, Target: st.to, After: it.path}
			}
			b, k, _ := parseLogPath(it.path)
			d := sdk.Delivery{ID: itemID(m, b, k), Data: data, Cursor: cur.encode(), Time: at}
			if err := sink.Deliver(ctx, d); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// isAncestor reports whether a (zero: the empty history) is b or an
// ancestor of b. A commit missing locally is not an ancestor. c.mu held.
func (c *channel) isAncestor(a, b plumbing.Hash) (bool, error) {
	if a.IsZero() || a == b {
		return true, nil
	}
	ca, err := object.GetCommit(c.repo.Storer, a)
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("git: read commit: %w", err)
	}
	cb, err := object.GetCommit(c.repo.Storer, b)
	if err != nil {
		return false, fmt.Errorf("git: read commit: %w", err)
	}
	ok, err := ca.IsAncestor(cb)
	if err != nil {
		return false, fmt.Errorf("git: ancestry: %w", err)
	}
	return ok, nil
}

// added lists the log files in to's tree that from's tree lacks (or holds
// with other content), in path order, after the path after. Entries outside
// the layout, oversized and expired files are skipped and counted. It
// returns to's committer time too. c.mu held.
func (c *channel) added(from, to plumbing.Hash, after string) ([]item, time.Time, error) {
	s := c.repo.Storer
	toC, err := object.GetCommit(s, to)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("git: read commit %s: %w", to, err)
	}
	var fromTree plumbing.Hash
	if !from.IsZero() {
		fromC, err := object.GetCommit(s, from)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("git: read commit %s: %w", from, err)
		}
		fromTree = fromC.TreeHash
	}
	count := after == "" // count skipped entries once, on the first pass
	foreign := func(n int) {
		if count {
			c.health.add("ignored_foreign", int64(n))
		}
	}
	newEntries := func(a, b plumbing.Hash) ([]object.TreeEntry, map[string]plumbing.Hash, error) {
		oldE, err := readTree(s, a)
		if err != nil {
			return nil, nil, err
		}
		newE, err := readTree(s, b)
		if err != nil {
			return nil, nil, err
		}
		old := make(map[string]plumbing.Hash, len(oldE))
		for _, e := range oldE {
			old[e.Name] = e.Hash
		}
		var out []object.TreeEntry
		for _, e := range newE {
			if old[e.Name] != e.Hash {
				out = append(out, e)
			}
		}
		return out, old, nil
	}
	roots, _, err := newEntries(fromTree, toC.TreeHash)
	if err != nil {
		return nil, time.Time{}, err
	}
	var oldLog, newLog plumbing.Hash
	for _, e := range roots {
		switch {
		case e.Name == logDir && e.Mode == filemode.Dir:
			newLog = e.Hash
		case e.Name == boardDir && e.Mode == filemode.Dir:
		default:
			foreign(1)
		}
	}
	if newLog.IsZero() {
		return nil, toC.Committer.When, nil
	}
	if !fromTree.IsZero() {
		if oldLog, err = subtree(s, fromTree, logDir); err != nil {
			return nil, time.Time{}, err
		}
	}
	buckets, oldBuckets, err := newEntries(oldLog, newLog)
	if err != nil {
		return nil, time.Time{}, err
	}
	var items []item
	for _, b := range buckets {
		bt, err := parseBucket(b.Name)
		if err != nil || b.Mode != filemode.Dir {
			foreign(1)
			continue
		}
		files, _, err := newEntries(oldBuckets[b.Name], b.Hash)
		if err != nil {
			return nil, time.Time{}, err
		}
		if expired(bt, c.cfg.Retention.D()) {
			if count {
				c.health.add("skipped_expired", int64(len(files)))
			}
			continue
		}
		for _, f := range files {
			p := logPath(b.Name, f.Name)
			if !keyRE.MatchString(f.Name) || (f.Mode != filemode.Regular && f.Mode != filemode.Executable) {
				foreign(1)
				continue
			}
			if after != "" && p <= after {
				continue
			}
			obj, err := s.EncodedObject(plumbing.BlobObject, f.Hash)
			if err != nil {
				foreign(1)
				continue
			}
			if obj.Size() > int64(c.cfg.MaxPayload) {
				if count {
					c.health.add("ignored_oversized", 1)
				}
				continue
			}
			items = append(items, item{path: p, hash: f.Hash})
		}
	}
	sort.Slice(items, func(i, j int) bool { return items[i].path < items[j].path })
	return items, toC.Committer.When, nil
}
