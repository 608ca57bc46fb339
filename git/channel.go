package git

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	gogit "github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"

	"github.com/remora-p2p/remora/sdk"
)

const (
	// trackPrefix is where fetched member refs live in the local clone.
	trackPrefix = "refs/remora/remote/"
	// remoteName names the anonymous remote (never written to the config).
	remoteName = "anonymous"
	// ownRef is the local ref pushed to the member's ref.
	ownRef = plumbing.ReferenceName("refs/remora/own")
	// neutral commit metadata: nothing about the member, peer or content,
	// nor the software (docs/threat-model.md).
	neutralName    = "sync"
	neutralEmail   = "sync@localhost"
	neutralMessage = "sync\n"
	// maxBoardHistory bounds the walk that dates a board value.
	maxBoardHistory = 256
)

var errClosed = fmt.Errorf("git: %w", sdk.ErrClosed)

// errRewritten: the own ref on the remote is not what this member last
// pushed (rewritten by a foreign commit, another Compact, a deleted ref).
var errRewritten = errors.New("git: own ref changed on the remote")

func rewritten(err error) bool {
	if errors.Is(err, gogit.ErrForceNeeded) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "non-fast-forward") || strings.Contains(msg, "fetch first") || strings.Contains(msg, "stale info")
}

func randInt64(n int64) int64 { return rand.Int64N(n) }

// pendingEdit is one path change waiting for a push, and who waits for it.
type pendingEdit struct {
	path    string
	data    []byte // nil deletes
	waiters []chan error
}

type channel struct {
	cfg    Config
	member string
	log    *slog.Logger
	remote *gogit.Remote
	auth   transport.AuthMethod
	where  string // the remote without credentials, for messages

	// mu serialises I/O on the local clone: fetch, push, object and ref writes.
	mu   sync.Mutex
	repo *gogit.Repository

	// flushMu serialises commit+push of the own ref (flusher, Compact).
	flushMu  sync.Mutex
	ownTip   plumbing.Hash // last pushed own commit
	synced   bool          // ownTip reflects the remote
	ownForce bool          // the remote own ref holds garbage: overwrite it

	qmu     sync.Mutex
	pending map[string]*pendingEdit
	keys    map[string]string // own pushed log keys -> bucket
	kick    chan struct{}

	// life cancels every call in flight and the flusher on Close: a fetch
	// or push stalled on the remote ends with its context.
	life sdk.Lifecycle

	health    health
	refusedMu sync.Mutex
	refused   map[plumbing.Hash]string // tips whose pack is too large -> member
}

func newChannel(cfg Config, member string, log *slog.Logger, repo *gogit.Repository, remote *gogit.Remote, auth transport.AuthMethod) *channel {
	c := &channel{
		cfg: cfg, member: member, log: log, repo: repo, remote: remote, auth: auth,
		where:   redact(cfg.Remote),
		keys:    map[string]string{},
		pending: map[string]*pendingEdit{},
		refused: map[plumbing.Hash]string{},
		kick:    make(chan struct{}, 1),
	}
	c.health.counters = map[string]int64{}
	_ = c.life.Go(c.flushLoop) // a new Lifecycle is open
	return c
}

// redact drops credentials from a remote URL.
func redact(remote string) string {
	ep, err := transport.NewEndpoint(remote)
	if err != nil {
		return "the remote"
	}
	host := ep.Host
	if ep.Port != 0 {
		host = net.JoinHostPort(ep.Host, strconv.Itoa(ep.Port))
	}
	if ep.Protocol == "file" {
		return "file://" + ep.Path
	}
	return ep.Protocol + "://" + host + "/" + strings.TrimPrefix(ep.Path, "/")
}

// begin starts a call that Close cancels (see sdk.Lifecycle); after Close
// it returns errClosed.
func (c *channel) begin(ctx context.Context) (context.Context, func(), error) {
	ctx, end, err := c.life.Begin(ctx)
	if err != nil {
		return ctx, end, errClosed
	}
	return ctx, end, nil
}

// ended is why a call's ctx ended: errClosed when Close ended it.
func ended(ctx context.Context) error {
	if errors.Is(context.Cause(ctx), sdk.ErrClosed) {
		return errClosed
	}
	return ctx.Err()
}

func (c *channel) Capabilities() sdk.Capabilities { return capabilities(c.cfg) }

// Close cancels the calls in flight and the flusher and waits for them;
// items still waiting fail.
func (c *channel) Close() error { return c.life.Close(nil) }

// ---------------------------------------------------------------- remote I/O

// check lists the remote: it proves the URL, credentials and host key.
func (c *channel) check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout.D())
	defer cancel()
	_, err := c.remote.ListContext(ctx, &gogit.ListOptions{Auth: c.auth})
	if err != nil && !errors.Is(err, transport.ErrEmptyRemoteRepository) {
		return c.fail("connect", err)
	}
	c.health.set(nil)
	return nil
}

// fail classifies err, records it for Health and returns it.
func (c *channel) fail(op string, err error) error {
	err = classify(op, c.where, err)
	c.health.set(err)
	return err
}

// fetchLocked fetches the namespace into trackPrefix and returns the member
// refs by name. Refs whose names are not member names are ignored and counted.
// c.mu must be held.
func (c *channel) fetchLocked(ctx context.Context) (map[string]plumbing.Hash, error) {
	err := c.fetchRefs(ctx)
	switch {
	case err == nil:
	case errors.Is(err, transport.ErrEmptyRemoteRepository):
		// nothing pushed yet: no member refs (drop stale tracking refs)
		if err := c.dropTracking(nil); err != nil {
			return nil, err
		}
		c.health.set(nil)
		return map[string]plumbing.Hash{}, nil
	default:
		c.health.add("fetch_errors", 1)
		return nil, c.fail("fetch", err)
	}
	c.health.set(nil)
	refs := map[string]plumbing.Hash{}
	iter, err := c.repo.References()
	if err != nil {
		return nil, fmt.Errorf("git: list refs: %w", err)
	}
	defer iter.Close()
	bad := 0
	err = iter.ForEach(func(r *plumbing.Reference) error {
		name := r.Name().String()
		if !strings.HasPrefix(name, trackPrefix) || r.Type() != plumbing.HashReference {
			return nil
		}
		m := strings.TrimPrefix(name, trackPrefix)
		if !memberRE.MatchString(m) {
			bad++
			return nil
		}
		refs[m] = r.Hash()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("git: list refs: %w", err)
	}
	c.health.setGauge("ignored_refs", int64(bad))
	return refs, nil
}

// dropTracking removes tracking refs not in keep.
func (c *channel) dropTracking(keep map[string]plumbing.Hash) error {
	iter, err := c.repo.References()
	if err != nil {
		return fmt.Errorf("git: list refs: %w", err)
	}
	var drop []plumbing.ReferenceName
	_ = iter.ForEach(func(r *plumbing.Reference) error {
		name := r.Name().String()
		if m, ok := strings.CutPrefix(name, trackPrefix); ok {
			if _, k := keep[m]; !k {
				drop = append(drop, r.Name())
			}
		}
		return nil
	})
	iter.Close()
	for _, n := range drop {
		if err := c.repo.Storer.RemoveReference(n); err != nil {
			return fmt.Errorf("git: drop ref: %w", err)
		}
	}
	return nil
}

// ---------------------------------------------------------------- publish

// Publish queues each valid item for the next commit on the own ref and
// returns when the push holding it succeeded, or with a per-item error.
func (c *channel) Publish(ctx context.Context, req sdk.PublishRequest) (sdk.PublishResponse, error) {
	if err := ctx.Err(); err != nil {
		return sdk.PublishResponse{}, err // nothing attempted
	}
	ctx, end, err := c.begin(ctx)
	if err != nil {
		return sdk.PublishResponse{}, err
	}
	defer end()
	res := sdk.PublishResponse{Results: make([]sdk.PublishResult, len(req.Items))}
	waits := make([]chan error, len(req.Items))
	for i, it := range req.Items {
		switch {
		case !sdk.ValidKey(it.IdempotencyKey):
			res.Results[i].Err = fmt.Errorf("git: publish: %w", sdk.CheckKey("idempotency key", it.IdempotencyKey))
			continue
		case len(it.Data) > c.cfg.MaxPayload:
			res.Results[i].Err = sdk.Errorf(sdk.CodeTooLarge, "git: publish: item has %d bytes, max_payload is %d", len(it.Data), c.cfg.MaxPayload)
			continue
		case len(it.To) > 0:
			res.Results[i].Err = sdk.Errorf(sdk.CodeUnsupported, "git: publish: the git channel has no addressed delivery (To)")
			continue
		}
		id, ch := c.enqueueLog(it.IdempotencyKey, it.Data)
		res.Results[i].ID = id
		waits[i] = ch
	}
	c.kickFlusher()
	for i, ch := range waits {
		if ch == nil {
			continue
		}
		if err := wait(ctx, ch); err != nil {
			res.Results[i].Err = fmt.Errorf("git: publish %s: %w", req.Items[i].IdempotencyKey, err)
		}
	}
	return res, nil
}

// wait waits for a push result.
func wait(ctx context.Context, ch <-chan error) error {
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		if err := ended(ctx); errors.Is(err, errClosed) {
			return err
		}
		return sdk.Errorf(sdk.CodeUnavailable, "not pushed before the deadline (it stays queued and may still appear): %w", ctx.Err())
	}
}

// enqueueLog queues a log item unless its key is already pushed or queued
// (strong idempotency while the file is retained). The returned channel is
// nil when there is nothing to wait for.
func (c *channel) enqueueLog(key string, data []byte) (string, chan error) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	bucket, pushed := c.keys[key]
	if pushed {
		return itemID(c.member, bucket, key), nil
	}
	ch := make(chan error, 1)
	for _, p := range c.pending {
		if b, k, err := parseLogPath(p.path); err == nil && k == key && p.data != nil {
			p.waiters = append(p.waiters, ch)
			return itemID(c.member, b, k), ch
		}
	}
	bucket = bucketOf(time.Now())
	path := logPath(bucket, key)
	c.pending[path] = &pendingEdit{path: path, data: append([]byte(nil), data...), waiters: []chan error{ch}}
	return itemID(c.member, bucket, key), ch
}

// enqueue queues a path change (board put, delete), replacing a queued
// change of the same path; its waiters then wait for the new one.
func (c *channel) enqueue(path string, data []byte) chan error {
	ch := make(chan error, 1)
	c.qmu.Lock()
	defer c.qmu.Unlock()
	e := &pendingEdit{path: path, data: data, waiters: []chan error{ch}}
	if old, ok := c.pending[path]; ok {
		e.waiters = append(e.waiters, old.waiters...)
		old.waiters = nil
	}
	c.pending[path] = e
	return ch
}

func (c *channel) kickFlusher() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// flushLoop commits and pushes queued edits at most once per flush
// interval, retrying with jittered exponential backoff while the remote is
// unavailable.
// ctx ends with Close.
func (c *channel) flushLoop(ctx context.Context) {
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			c.failAll(errClosed)
			return
		case <-c.kick:
		}
		if d := time.Until(last.Add(c.cfg.FlushInterval.D())); d > 0 && sdk.Sleep(ctx, d) != nil {
			continue // stopping: the select above fails what is queued
		}
		for attempt := 0; ; attempt++ {
			err := c.flush(ctx)
			last = time.Now()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				break
			}
			if sdk.CodeOf(err) != sdk.CodeUnavailable {
				c.log.Error("git: push failed; failing queued items", "err", err)
				c.failAll(err)
				break
			}
			c.health.add("push_retries", 1)
			// The callers learn now that their items are not in yet (a host
			// retries them with the same keys, which wait on the same queued
			// edits); the edits stay queued and go with the next push.
			c.releaseWaiters(sdk.Errorf(sdk.CodeUnavailable, "git: push failed; the item stays queued and is pushed when the remote answers again: %w", err))
			back := min(time.Second<<min(attempt, 6), time.Minute)
			c.log.Warn("git: push failed; retrying", "err", err, "in", back)
			if sdk.Sleep(ctx, jitter(max(back, c.cfg.FlushInterval.D()))) != nil {
				break
			}
		}
		c.qmu.Lock()
		more := len(c.pending) > 0
		c.qmu.Unlock()
		if more {
			c.kickFlusher()
		}
	}
}

// releaseWaiters answers every caller waiting for a queued edit with err,
// keeping the edits queued.
func (c *channel) releaseWaiters(err error) { c.answerWaiters(err, false) }

// failAll answers every waiting caller with err and drops the queue.
func (c *channel) failAll(err error) { c.answerWaiters(err, true) }

func (c *channel) answerWaiters(err error, drop bool) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	for p, e := range c.pending {
		for _, w := range e.waiters {
			w <- err
		}
		e.waiters = nil
		if drop {
			delete(c.pending, p)
		}
	}
}

// flush commits every queued edit in one commit on the own ref and pushes it.
func (c *channel) flush(ctx context.Context) error {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	c.qmu.Lock()
	batch := make([]*pendingEdit, 0, len(c.pending))
	for _, e := range c.pending {
		batch = append(batch, e)
	}
	c.qmu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	var err error
	for range 3 { // a rewritten own ref costs a resync and another try
		err = c.commitAndPush(ctx, batch, false)
		if !errors.Is(err, errRewritten) {
			break
		}
		c.log.Info("git: own ref was rewritten on the remote; rebasing onto it")
		c.synced = false
	}
	if errors.Is(err, errRewritten) {
		err = sdk.Errorf(sdk.CodeUnavailable, "git: push: own ref keeps changing on %s: %w", c.where, err)
	}
	if err != nil {
		return err
	}
	c.qmu.Lock()
	defer c.qmu.Unlock()
	for _, e := range batch {
		for _, w := range e.waiters {
			w <- nil
		}
		e.waiters = nil
		if c.pending[e.path] == e {
			delete(c.pending, e.path)
		}
	}
	return nil
}

// syncOwnLocked reads the own ref's tip and keys from the remote. c.mu and
// c.flushMu must be held.
func (c *channel) syncOwnLocked(ctx context.Context) error {
	refs, err := c.fetchLocked(ctx)
	if err != nil {
		return err
	}
	c.ownTip = refs[c.member]
	c.ownForce = false
	keys := map[string]string{}
	if !c.ownTip.IsZero() {
		commit, err := object.GetCommit(c.repo.Storer, c.ownTip)
		if err != nil {
			// someone pointed the own ref at garbage: start afresh over it
			c.log.Warn("git: own ref on the remote is not a commit; replacing it", "err", err)
			c.health.add("ignored_foreign", 1)
			c.ownTip, c.ownForce, c.synced = plumbing.ZeroHash, true, true
			c.qmu.Lock()
			c.keys = keys
			c.qmu.Unlock()
			return nil
		}
		logTree, err := subtree(c.repo.Storer, commit.TreeHash, logDir)
		if err != nil {
			return err
		}
		buckets, err := readTree(c.repo.Storer, logTree)
		if err != nil {
			return err
		}
		for _, b := range buckets {
			files, err := readTree(c.repo.Storer, b.Hash)
			if err != nil {
				continue // a foreign file named like a bucket
			}
			for _, f := range files {
				keys[f.Name] = b.Name
			}
		}
	}
	c.qmu.Lock()
	c.keys = keys
	c.qmu.Unlock()
	c.synced = true
	return nil
}

// commitAndPush makes one commit with batch (and retention pruning) on the
// own ref and pushes it; with squash, the commit has no parent and replaces
// the ref's history. c.flushMu must be held.
func (c *channel) commitAndPush(ctx context.Context, batch []*pendingEdit, squash bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.synced {
		if err := c.syncOwnLocked(ctx); err != nil {
			return err
		}
	}
	s := c.repo.Storer
	var baseTree plumbing.Hash
	if !c.ownTip.IsZero() {
		commit, err := object.GetCommit(s, c.ownTip)
		if err != nil {
			return fmt.Errorf("git: read own ref: %w", err)
		}
		baseTree = commit.TreeHash
	}
	edits := map[string]plumbing.Hash{}
	for _, e := range batch {
		h := plumbing.ZeroHash
		if e.data != nil {
			var err error
			if h, err = writeBlob(s, e.data); err != nil {
				return err
			}
		}
		edits[e.path] = h
	}
	pruned, err := c.expiredBuckets(baseTree)
	if err != nil {
		return err
	}
	for _, b := range pruned {
		edits[logDir+"/"+b] = plumbing.ZeroHash
	}
	tree, err := editTree(s, baseTree, edits)
	if err != nil {
		return err
	}
	if tree == baseTree && !squash && !c.ownTip.IsZero() {
		return nil // nothing changed (deleting what is gone)
	}
	if tree.IsZero() {
		if tree, err = emptyTree(s); err != nil {
			return err
		}
	}
	sig := object.Signature{Name: neutralName, Email: neutralEmail, When: time.Now().UTC().Truncate(time.Second)}
	commit := &object.Commit{Author: sig, Committer: sig, Message: neutralMessage, TreeHash: tree}
	if !squash && !c.ownTip.IsZero() {
		commit.ParentHashes = []plumbing.Hash{c.ownTip}
	}
	obj := s.NewEncodedObject()
	if err := commit.Encode(obj); err != nil {
		return fmt.Errorf("git: encode commit: %w", err)
	}
	h, err := s.SetEncodedObject(obj)
	if err != nil {
		return fmt.Errorf("git: write commit: %w", err)
	}
	if err := s.SetReference(plumbing.NewHashReference(ownRef, h)); err != nil {
		return fmt.Errorf("git: set ref: %w", err)
	}
	spec := string(ownRef) + ":" + c.cfg.Namespace + c.member
	if squash || c.ownForce {
		spec = "+" + spec
	}
	pctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout.D())
	err = c.remote.PushContext(pctx, &gogit.PushOptions{RemoteName: remoteName, RefSpecs: []gitconfig.RefSpec{gitconfig.RefSpec(spec)}, Auth: c.auth})
	cancel()
	switch {
	case err == nil, errors.Is(err, gogit.NoErrAlreadyUpToDate):
	case rewritten(err):
		return fmt.Errorf("%w: %v", errRewritten, err)
	default:
		return c.fail("push", err)
	}
	c.health.set(nil)
	c.health.add("commits", 1)
	c.ownTip, c.ownForce = h, false
	// the tracking ref now lags; the next fetch updates it
	c.qmu.Lock()
	defer c.qmu.Unlock()
	for _, e := range batch {
		if b, k, err := parseLogPath(e.path); err == nil {
			if e.data != nil {
				c.keys[k] = b
				c.health.add("pushed_items", 1)
			} else {
				delete(c.keys, k)
			}
		}
	}
	if len(pruned) > 0 {
		gone := map[string]bool{}
		for _, b := range pruned {
			gone[b] = true
		}
		for k, b := range c.keys {
			if gone[b] {
				delete(c.keys, k)
			}
		}
		c.health.add("pruned_buckets", int64(len(pruned)))
	}
	return nil
}

// expiredBuckets lists the log buckets of tree older than the retention.
func (c *channel) expiredBuckets(tree plumbing.Hash) ([]string, error) {
	r := c.cfg.Retention.D()
	if r == 0 || tree.IsZero() {
		return nil, nil
	}
	logTree, err := subtree(c.repo.Storer, tree, logDir)
	if err != nil {
		return nil, err
	}
	entries, err := readTree(c.repo.Storer, logTree)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if t, err := parseBucket(e.Name); err == nil && expired(t, r) {
			out = append(out, e.Name)
		}
	}
	return out, nil
}

func expired(bucket time.Time, retention time.Duration) bool {
	return retention > 0 && bucket.Add(bucketSpan).Before(time.Now().Add(-retention))
}
