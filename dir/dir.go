package dir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/remora-p2p/remora/sdk"
)

// Version is the dir adapter's version.
const Version = "0.1.0"

// indexFile is the index's name in the channel's state dir.
const indexFile = "dir-index"

var (
	// fullRescan is how often a scan re-reads every bucket, whatever the
	// directory times say.
	fullRescan = time.Minute
	// freshDir is how long after its last change a bucket is re-read on
	// every scan, for filesystems with coarse directory times (FAT: 2s).
	freshDir = 5 * time.Second
)

// New returns the dir adapter.
func New() sdk.Adapter { return adapter{} }

type adapter struct{}

func defaultCaps(c Config) sdk.Capabilities {
	return sdk.Capabilities{
		MaxPayload:   c.MaxPayload,
		Counting:     sdk.CountBytes,
		Board:        true,
		PollInterval: c.PollInterval,
		Latency:      c.PollInterval,
		Retention:    c.Retention,
		Delete:       sdk.DeleteAny,
		Idempotency:  sdk.Idempotency{Level: sdk.IdempotencyStrong},
	}
}

func (adapter) Info() sdk.Info {
	return sdk.Info{
		Name:     "dir",
		Version:  Version,
		Summary:  "a shared folder (Syncthing, Nextcloud, NFS, a USB stick) as a channel",
		Defaults: defaultCaps(Config{MaxPayload: defaultMaxPayload, PollInterval: sdk.Duration(defaultPoll), Retention: sdk.Duration(defaultRetention)}),
	}
}

// Configure validates the config, checks that the folder exists and is
// writable, creates board/ and log/ in it, and loads the channel's index.
func (adapter) Configure(ctx context.Context, req sdk.ConfigureRequest) (sdk.Channel, error) {
	cfg, err := parseConfig(req.Config)
	if err != nil {
		return nil, err
	}
	root, err := filepath.Abs(cfg.Path)
	if err != nil {
		return nil, sdk.Errorf(sdk.CodeBadConfig, "dir: config: \"path\" %q: %v", cfg.Path, err)
	}
	fi, err := os.Stat(root)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, sdk.Errorf(sdk.CodeNotFound, "dir: folder %s does not exist: create it (or mount the share) and point \"path\" at it", root)
	case err != nil:
		return nil, sdk.Errorf(sdk.CodeUnavailable, "dir: folder %s: %w", root, err)
	case !fi.IsDir():
		return nil, sdk.Errorf(sdk.CodeBadConfig, "dir: config: \"path\" %s is a file, not a folder", root)
	}
	for _, sub := range []string{"log", "board"} {
		if err := os.Mkdir(filepath.Join(root, sub), 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fsError("dir: create "+sub+"/", root, err)
		}
	}
	if err := writeFile(root, tmpPrefix+"probe", nil); err != nil {
		return nil, fsError("dir: write test file", root, err)
	}
	os.Remove(filepath.Join(root, tmpPrefix+"probe"))
	folder, err := folderID(root)
	if err != nil {
		return nil, fsError("dir: folder identity", root, err)
	}
	log := req.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var ipath string
	if req.StateDir != "" {
		if err := os.MkdirAll(req.StateDir, 0o700); err != nil {
			return nil, sdk.Errorf(sdk.CodeUnavailable, "dir: state dir: %w", err)
		}
		ipath = filepath.Join(req.StateDir, indexFile)
	}
	idx, fresh, err := openIndex(ipath, folder)
	if err != nil {
		return nil, sdk.Errorf(sdk.CodeUnavailable, "dir: state dir: %w", err)
	}
	if fresh != "" {
		log.Info("dir: new index; old cursors will resubscribe from the start", "reason", fresh)
	}
	c := &channel{
		cfg:       cfg,
		caps:      defaultCaps(cfg),
		root:      root,
		log:       log,
		done:      make(chan struct{}),
		idx:       idx,
		seen:      map[string]time.Time{},
		ignored:   map[string]counts{},
		published: map[string]string{},
	}
	c.mu.Lock()
	err = c.scan(true)
	c.mu.Unlock()
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// fsError maps a filesystem error on the folder to a typed error a user can
// act on.
func fsError(op, root string, err error) error {
	switch {
	case errors.Is(err, fs.ErrPermission):
		return sdk.Errorf(sdk.CodeNeedsUserAction, "%s: folder %s is not writable: give this user write access (%w)", op, root, err)
	case errors.Is(err, fs.ErrNotExist):
		return sdk.Errorf(sdk.CodeUnavailable, "%s: folder %s is gone: is the share mounted? (%w)", op, root, err)
	default:
		return sdk.Errorf(sdk.CodeUnavailable, "%s: %w", op, err)
	}
}

// counts are ignored files in one place.
type counts struct{ temp, foreign int }

type channel struct {
	cfg  Config
	caps sdk.Capabilities
	root string
	log  *slog.Logger
	done chan struct{}

	mu        sync.Mutex
	closed    bool
	idx       *index
	lastScan  time.Time
	lastFull  time.Time
	seen      map[string]time.Time // bucket → directory time when last read
	ignored   map[string]counts    // bucket (or "log", "board") → ignored files
	published map[string]string    // key → bucket, written here and not yet indexed
	pruned    int64
	oversize  int64
	scanErr   error
	scanErrs  int64
}

var (
	_ sdk.Channel  = (*channel)(nil)
	_ sdk.Board    = (*channel)(nil)
	_ sdk.Deleter  = (*channel)(nil)
	_ sdk.Healther = (*channel)(nil)
)

var errClosed = errors.New("dir: channel closed")

func (c *channel) Capabilities() sdk.Capabilities { return c.caps }

func (c *channel) logDir() string   { return filepath.Join(c.root, "log") }
func (c *channel) boardDir() string { return filepath.Join(c.root, "board") }

func (c *channel) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Publish writes each envelope to log/<bucket>/<key>. A key that is already
// in the folder is not written again; its result is the existing item.
func (c *channel) Publish(ctx context.Context, req sdk.PublishRequest) (sdk.PublishResponse, error) {
	if err := ctx.Err(); err != nil {
		return sdk.PublishResponse{}, fmt.Errorf("dir: publish: %w", err)
	}
	if c.isClosed() {
		return sdk.PublishResponse{}, fmt.Errorf("dir: publish: %w", errClosed)
	}
	bucket := bucketOf(time.Now())
	bdir := filepath.Join(c.logDir(), bucket)
	resp := sdk.PublishResponse{Results: make([]sdk.PublishResult, len(req.Items))}
	// A batch is written in two steps so that it costs two flushes, not
	// one per file: every envelope to a temporary file, one sync of their
	// data, then the renames and one sync of the bucket folder. A file
	// appears under its key only once its data is durable.
	var staged []int
	tmps := make([]string, len(req.Items))
	made, created := false, false
	for i, it := range req.Items {
		r := &resp.Results[i]
		switch {
		case ctx.Err() != nil:
			r.Err = fmt.Errorf("dir: publish: %w", ctx.Err())
			continue
		case !validKey(it.IdempotencyKey):
			r.Err = fmt.Errorf("dir: publish: idempotency key %q: want 1 to 64 characters of [A-Za-z0-9_-]", it.IdempotencyKey)
			continue
		case len(it.Data) > c.cfg.MaxPayload:
			r.Err = sdk.Errorf(sdk.CodeTooLarge, "dir: publish: envelope is %d bytes, max_payload is %d", len(it.Data), c.cfg.MaxPayload)
			continue
		}
		if b, ok := c.existing(it.IdempotencyKey, bucket); ok {
			r.ID = b + "/" + it.IdempotencyKey
			continue
		}
		if !made {
			err := os.Mkdir(bdir, 0o755)
			if err != nil && !errors.Is(err, fs.ErrExist) {
				r.Err = fsError("dir: publish", c.root, err)
				continue
			}
			made, created = true, err == nil
		}
		tmp, err := stage(bdir, it.Data)
		if err != nil {
			r.Err = fsError("dir: publish", c.root, err)
			continue
		}
		tmps[i] = tmp
		staged = append(staged, i)
	}
	if len(staged) == 0 {
		return resp, nil
	}
	var paths []string
	for _, i := range staged {
		paths = append(paths, tmps[i])
	}
	fail := func(i int, err error) {
		os.Remove(tmps[i])
		resp.Results[i] = sdk.PublishResult{Err: fsError("dir: publish", c.root, err)}
	}
	if err := syncFiles(bdir, paths); err != nil {
		for _, i := range staged {
			fail(i, err)
		}
		return resp, nil
	}
	var written []int
	c.mu.Lock()
	for _, i := range staged {
		key := req.Items[i].IdempotencyKey
		if b, ok := c.published[key]; ok { // the same key twice in this batch
			os.Remove(tmps[i])
			resp.Results[i].ID = b + "/" + key
			continue
		}
		if err := os.Rename(tmps[i], filepath.Join(bdir, key)); err != nil {
			fail(i, err)
			continue
		}
		c.published[key] = bucket
		resp.Results[i].ID = bucket + "/" + key
		written = append(written, i)
	}
	c.mu.Unlock()
	err := syncDir(bdir)
	if err == nil && created {
		err = syncDir(c.logDir())
	}
	if err != nil {
		for _, i := range written {
			resp.Results[i] = sdk.PublishResult{Err: fsError("dir: publish: sync", c.root, err)}
		}
	}
	return resp, nil
}

// existing finds key in the folder: indexed, written by this channel, or
// present in this hour's or the previous hour's bucket.
func (c *channel) existing(key, bucket string) (string, bool) {
	c.mu.Lock()
	b, ok := c.idx.byKey[key]
	if !ok {
		b, ok = c.published[key]
	}
	c.mu.Unlock()
	if ok {
		return b, true
	}
	prev := bucketOf(mustParseBucket(bucket).Add(-time.Hour))
	for _, b := range []string{bucket, prev} {
		if _, err := os.Lstat(filepath.Join(c.logDir(), b, key)); err == nil {
			return b, true
		}
	}
	return "", false
}

func mustParseBucket(b string) time.Time {
	t, err := time.Parse(bucketLayout, b)
	if err != nil {
		panic("dir: bad bucket " + b)
	}
	return t
}

// scan indexes new log files, prunes expired buckets and counts ignored
// files. c.mu is held.
func (c *channel) scan(full bool) error {
	now := time.Now()
	c.lastScan = now
	if now.Sub(c.lastFull) >= fullRescan {
		full = true
	}
	if full {
		c.lastFull = now
	}
	err := c.scanLocked(now, full)
	c.scanErr = err
	if err != nil {
		c.scanErrs++
	}
	return err
}

func (c *channel) scanLocked(now time.Time, full bool) error {
	ents, err := os.ReadDir(c.logDir())
	if err != nil {
		// Never recreate log/ here: an unmounted share must not turn
		// into an empty local folder.
		return fsError("dir: scan", c.root, err)
	}
	folder, err := folderID(c.root)
	if err != nil {
		return fsError("dir: scan", c.root, err)
	}
	if folder != c.idx.folder {
		c.log.Warn("dir: folder identity changed (replaced or wiped); starting a new index")
		if err := c.idx.reset(folder); err != nil {
			return sdk.Errorf(sdk.CodeUnavailable, "dir: scan: %w", err)
		}
		clear(c.seen)
		full = true
	}
	oldest := bucketOf(now.Add(-c.cfg.Retention.D()))
	var top counts
	var found []entry
	present := map[string]bool{}
	for _, ent := range ents {
		name := ent.Name()
		if !ent.IsDir() || !validBucket(name) {
			if classify(name, ent.IsDir()) == kindTemp {
				top.temp++
			} else {
				top.foreign++
			}
			continue
		}
		if name < oldest {
			if err := os.RemoveAll(filepath.Join(c.logDir(), name)); err != nil {
				c.log.Warn("dir: prune expired bucket", "bucket", name, "err", err)
			} else {
				c.pruned++
			}
			continue
		}
		present[name] = true
		info, err := ent.Info()
		if err != nil {
			continue // removed since ReadDir
		}
		mt := info.ModTime()
		if last, ok := c.seen[name]; ok && !full && last.Equal(mt) && now.Sub(mt) > freshDir {
			continue
		}
		files, err := os.ReadDir(filepath.Join(c.logDir(), name))
		if err != nil {
			continue
		}
		var n counts
		for _, f := range files {
			switch classify(f.Name(), f.IsDir()) {
			case kindTemp:
				n.temp++
			case kindForeign:
				n.foreign++
			default:
				if _, ok := c.idx.have[name+"/"+f.Name()]; !ok {
					found = append(found, entry{bucket: name, name: f.Name()})
				}
			}
		}
		c.ignored[name] = n
		c.seen[name] = mt
	}
	c.ignored["log"] = top
	for b := range c.seen {
		if !present[b] {
			delete(c.seen, b)
			delete(c.ignored, b)
		}
	}
	if err := c.idx.add(found); err != nil {
		return sdk.Errorf(sdk.CodeUnavailable, "dir: scan: %w", err)
	}
	for _, e := range found {
		delete(c.published, e.name)
	}
	for k, b := range c.published {
		if b < oldest {
			delete(c.published, k)
		}
	}
	if err := c.idx.prune(oldest); err != nil {
		return sdk.Errorf(sdk.CodeUnavailable, "dir: scan: %w", err)
	}
	return nil
}

// pending scans if a scan is due and returns the index ID and the entries
// after seq.
func (c *channel) pending(seq uint64) ([idLen]byte, []entry, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return c.idx.id, nil, errClosed
	}
	var err error
	if time.Since(c.lastScan) >= c.cfg.PollInterval.D()/2 {
		err = c.scan(false)
	}
	return c.idx.id, c.idx.after(seq), err
}

// Subscribe delivers the log files in index order from the cursor on,
// scanning at poll_interval.
func (c *channel) Subscribe(ctx context.Context, req sdk.SubscribeRequest, sink sdk.Sink) error {
	var pos uint64
	var id [idLen]byte
	if req.Cursor != nil {
		cur, err := decodeCursor(req.Cursor)
		if err != nil {
			return &sdk.Error{Code: sdk.CodeCursorInvalid, Message: "dir: subscribe: " + err.Error() + ": resubscribe from the start", Err: err}
		}
		// Scan first: a replaced folder starts a new index.
		c.mu.Lock()
		if !c.closed {
			c.scan(false)
		}
		next := c.idx.next
		id = c.idx.id
		c.mu.Unlock()
		switch {
		case cur.index != id:
			return sdk.Errorf(sdk.CodeCursorInvalid, "dir: subscribe: the cursor belongs to another index (the folder was replaced or wiped, or the state dir lost): resubscribe from the start")
		case cur.seq >= next:
			return sdk.Errorf(sdk.CodeCursorInvalid, "dir: subscribe: the cursor is ahead of the index (%d >= %d): resubscribe from the start", cur.seq, next)
		}
		pos = cur.seq
	} else {
		c.mu.Lock()
		id = c.idx.id
		c.mu.Unlock()
	}
	tick := time.NewTicker(c.cfg.PollInterval.D())
	defer tick.Stop()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		now, batch, err := c.pending(pos)
		switch {
		case errors.Is(err, errClosed):
			return fmt.Errorf("dir: subscribe: %w", err)
		case err != nil:
			c.log.Warn("dir: scan failed; retrying at the next poll", "err", err)
		case now != id:
			return sdk.Errorf(sdk.CodeCursorInvalid, "dir: subscribe: the folder was replaced or wiped: resubscribe from the start")
		}
		for _, e := range batch {
			d, ok, err := c.read(e)
			if err != nil {
				return err
			}
			if !ok {
				continue // deleted, pruned or oversize
			}
			d.Cursor = cursor{index: id, seq: e.seq}.encode()
			if err := sink.Deliver(ctx, d); err != nil {
				return err
			}
			pos = e.seq
		}
		if len(batch) > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done:
			return fmt.Errorf("dir: subscribe: %w", errClosed)
		case <-tick.C:
		}
	}
}

// read loads one log file. ok is false for files that are gone or too large.
func (c *channel) read(e entry) (sdk.Delivery, bool, error) {
	f, err := os.Open(filepath.Join(c.logDir(), e.bucket, e.name))
	if errors.Is(err, fs.ErrNotExist) {
		return sdk.Delivery{}, false, nil
	}
	if err != nil {
		return sdk.Delivery{}, false, fsError("dir: subscribe: read "+e.id(), c.root, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return sdk.Delivery{}, false, fsError("dir: subscribe: read "+e.id(), c.root, err)
	}
	if fi.Size() > int64(c.cfg.MaxPayload) {
		c.mu.Lock()
		c.oversize++
		c.mu.Unlock()
		c.log.Warn("dir: skipping a file larger than max_payload", "id", e.id(), "size", fi.Size())
		return sdk.Delivery{}, false, nil
	}
	data := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, data); err != nil {
		return sdk.Delivery{}, false, fsError("dir: subscribe: read "+e.id(), c.root, err)
	}
	return sdk.Delivery{ID: e.id(), Data: data, Time: fi.ModTime()}, true, nil
}

// Put writes board/<key> atomically.
func (c *channel) Put(ctx context.Context, req sdk.PutRequest) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("dir: put: %w", err)
	}
	if c.isClosed() {
		return fmt.Errorf("dir: put: %w", errClosed)
	}
	if !validKey(req.Key) {
		return fmt.Errorf("dir: put: key %q: want 1 to 64 characters of [A-Za-z0-9_-]", req.Key)
	}
	if len(req.Value) > c.cfg.MaxPayload {
		return sdk.Errorf(sdk.CodeTooLarge, "dir: put: value is %d bytes, max_payload is %d", len(req.Value), c.cfg.MaxPayload)
	}
	if err := writeFile(c.boardDir(), req.Key, req.Value); err != nil {
		return fsError("dir: put", c.root, err)
	}
	if err := syncDir(c.boardDir()); err != nil {
		return fsError("dir: put", c.root, err)
	}
	return nil
}

// Get reads board files: the given keys, or every key.
func (c *channel) Get(ctx context.Context, req sdk.GetRequest) (sdk.GetResponse, error) {
	if err := ctx.Err(); err != nil {
		return sdk.GetResponse{}, fmt.Errorf("dir: get: %w", err)
	}
	if c.isClosed() {
		return sdk.GetResponse{}, fmt.Errorf("dir: get: %w", errClosed)
	}
	keys := req.Keys
	if len(keys) == 0 {
		ents, err := os.ReadDir(c.boardDir())
		if err != nil {
			return sdk.GetResponse{}, fsError("dir: get", c.root, err)
		}
		var n counts
		for _, e := range ents {
			switch classify(e.Name(), e.IsDir()) {
			case kindItem:
				keys = append(keys, e.Name())
			case kindTemp:
				n.temp++
			default:
				n.foreign++
			}
		}
		c.mu.Lock()
		c.ignored["board"] = n
		c.mu.Unlock()
	}
	var resp sdk.GetResponse
	for _, k := range keys {
		if !validKey(k) {
			continue // no such file can exist
		}
		path := filepath.Join(c.boardDir(), k)
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return sdk.GetResponse{}, fsError("dir: get "+k, c.root, err)
		}
		en := sdk.BoardEntry{Key: k, Value: data}
		if fi, err := os.Stat(path); err == nil {
			en.Time = fi.ModTime()
		}
		resp.Entries = append(resp.Entries, en)
	}
	return resp, nil
}

// Delete removes log items by ID (<bucket>/<key>). An item already gone is
// success.
func (c *channel) Delete(ctx context.Context, req sdk.DeleteRequest) (sdk.DeleteResponse, error) {
	if err := ctx.Err(); err != nil {
		return sdk.DeleteResponse{}, fmt.Errorf("dir: delete: %w", err)
	}
	if c.isClosed() {
		return sdk.DeleteResponse{}, fmt.Errorf("dir: delete: %w", errClosed)
	}
	resp := sdk.DeleteResponse{Errors: make([]error, len(req.IDs))}
	dirs := map[string]bool{}
	for i, id := range req.IDs {
		bucket, key, ok := strings.Cut(id, "/")
		if !ok || !validBucket(bucket) || !validKey(key) {
			resp.Errors[i] = sdk.Errorf(sdk.CodeNotFound, "dir: delete: %q is not a dir item ID (<bucket>/<key>)", id)
			continue
		}
		bdir := filepath.Join(c.logDir(), bucket)
		if err := os.Remove(filepath.Join(bdir, key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			resp.Errors[i] = fsError("dir: delete "+id, c.root, err)
			continue
		}
		dirs[bdir] = true
	}
	for d := range dirs {
		if err := syncDir(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			c.log.Warn("dir: delete: sync", "dir", d, "err", err)
		}
	}
	return resp, nil
}

// Health reports the last scan's state and the counters: indexed items,
// ignored temporary and foreign files, pruned buckets, oversize files.
func (c *channel) Health(ctx context.Context) sdk.Health {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ig counts
	for _, n := range c.ignored {
		ig.temp += n.temp
		ig.foreign += n.foreign
	}
	h := sdk.Health{
		State: sdk.HealthOK,
		Counters: map[string]int64{
			"indexed":          int64(len(c.idx.entries)),
			"ignored_temp":     int64(ig.temp),
			"ignored_foreign":  int64(ig.foreign),
			"ignored_oversize": c.oversize,
			"pruned_buckets":   c.pruned,
			"scan_errors":      c.scanErrs,
		},
	}
	if c.scanErr != nil {
		h.State, h.Message = sdk.HealthDown, c.scanErr.Error()
	}
	return h
}

// Close stops the channel's subscriptions and closes its index.
func (c *channel) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	close(c.done)
	return c.idx.close()
}
