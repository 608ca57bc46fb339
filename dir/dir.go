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
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, fsError("dir: open folder", root, err)
	}
	defer r.Close()
	for _, sub := range []string{"log", "board"} {
		if err := r.Mkdir(sub, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fsError("dir: create "+sub+"/", root, err)
		}
	}
	probe, err := stageIn(r, ".", nil, false)
	if err != nil {
		return nil, fsError("dir: write test file", root, err)
	}
	r.Remove(probe)
	folder, err := folderID(r)
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
		noticed:   map[string]bool{},
	}
	// Watch before the first scan, so nothing lands unseen between them.
	c.watch, c.unwatched = startWatch(filepath.Join(root, "log"), cfg.Watch, cfg.Retention.D(), log)
	if c.unwatched != nil {
		log.Info("dir: polling the folder", "every", cfg.PollInterval.D(), "why", c.unwatched.Error())
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
	case errors.Is(err, errReplaced):
		return sdk.Errorf(sdk.CodeNeedsUserAction, "%s: in folder %s: %w", op, root, err)
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
	skipped   [numSkips]int64 // files skipped for what they are, by why
	noticed   map[string]bool // files skipped and logged ("log/<bucket>/<key>", "board/<key>")
	scanErr   error
	scanErrs  int64

	watch     *watcher // nil when the folder is polled (unwatched says why)
	unwatched error
	dirty     map[string]bool // buckets the watch saw change: re-read them
}

var (
	_ sdk.Channel  = (*channel)(nil)
	_ sdk.Board    = (*channel)(nil)
	_ sdk.Deleter  = (*channel)(nil)
	_ sdk.Healther = (*channel)(nil)
)

// errClosed is what calls after Close return (errors.Is sdk.ErrClosed).
var errClosed = fmt.Errorf("dir: %w", sdk.ErrClosed)

func (c *channel) Capabilities() sdk.Capabilities { return c.caps }

// openSub opens log/ or board/ of the folder: see open.go.
func (c *channel) openSub(name string) (*os.Root, error) {
	r, err := os.OpenRoot(c.root)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return openSub(r, name)
}

// Why a file in the folder is skipped, for Health's counters.
const (
	skipOversize   = iota // larger than max_payload, or grew past it while read
	skipSpecial           // a link, FIFO, device, socket or folder
	skipUnreadable        // no permission to read it
	numSkips
)

var skipCounters = [numSkips]string{"ignored_oversize", "ignored_special", "ignored_unreadable"}

// maxBoardBytes bounds the values one board Get returns together (at
// least one max_payload): a board stuffed with junk costs this much per
// read, not the folder's size.
const maxBoardBytes = 16 << 20

// maxNoticed bounds the files remembered as skipped; past it a skipped
// file is counted and logged again (the log handler still quiets it).
const maxNoticed = 10000

// skip records that the file at id ("log/<bucket>/<key>", "board/<key>")
// is skipped for err, counting and logging it the first time only. It
// returns false for an error that is no property of the file (the folder
// failing), which the caller reports instead.
func (c *channel) skip(id string, err error) bool {
	why, msg := -1, ""
	var nr errNotRegular
	var tl errTooLarge
	switch {
	case errors.As(err, &tl):
		why, msg = skipOversize, "dir: skipping a file larger than max_payload"
	case errors.As(err, &nr):
		why, msg = skipSpecial, "dir: skipping a file that is not a regular file"
	case errors.Is(err, fs.ErrPermission):
		why, msg = skipUnreadable, "dir: skipping a file this user may not read"
	default:
		return false
	}
	c.mu.Lock()
	first := !c.noticed[id]
	if first {
		c.skipped[why]++
		if len(c.noticed) < maxNoticed {
			c.noticed[id] = true
		}
	}
	c.mu.Unlock()
	if first {
		c.log.Warn(msg, "file", id, "why", err.Error())
	}
	return true
}

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
	resp := sdk.PublishResponse{Results: make([]sdk.PublishResult, len(req.Items))}
	lr, err := c.openSub("log")
	if err != nil {
		err = fsError("dir: publish", c.root, err)
		for i := range resp.Results {
			resp.Results[i].Err = err
		}
		return resp, nil
	}
	defer lr.Close()
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
			r.Err = fmt.Errorf("dir: publish: %w", sdk.CheckKey("idempotency key", it.IdempotencyKey))
			continue
		case len(it.Data) > c.cfg.MaxPayload:
			r.Err = sdk.Errorf(sdk.CodeTooLarge, "dir: publish: envelope is %d bytes, max_payload is %d", len(it.Data), c.cfg.MaxPayload)
			continue
		}
		if b, ok := c.existing(lr, it.IdempotencyKey, bucket); ok {
			r.ID = b + "/" + it.IdempotencyKey
			continue
		}
		if !made {
			err := lr.Mkdir(bucket, 0o755)
			if err != nil && !errors.Is(err, fs.ErrExist) {
				r.Err = fsError("dir: publish", c.root, err)
				continue
			}
			made, created = true, err == nil
		}
		tmp, err := stageIn(lr, bucket, it.Data, false)
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
		lr.Remove(tmps[i])
		resp.Results[i] = sdk.PublishResult{Err: fsError("dir: publish", c.root, err)}
	}
	if err := syncFiles(lr, bucket, paths); err != nil {
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
			lr.Remove(tmps[i])
			resp.Results[i].ID = b + "/" + key
			continue
		}
		if err := lr.Rename(tmps[i], bucket+"/"+key); err != nil {
			fail(i, err)
			continue
		}
		c.published[key] = bucket
		resp.Results[i].ID = bucket + "/" + key
		written = append(written, i)
	}
	c.mu.Unlock()
	err = syncDirIn(lr, bucket)
	if err == nil && created {
		err = syncDirIn(lr, ".")
	}
	if err != nil {
		for _, i := range written {
			resp.Results[i] = sdk.PublishResult{Err: fsError("dir: publish: sync", c.root, err)}
		}
	}
	return resp, nil
}

// existing finds key in the folder (lr is its log/): indexed, written by
// this channel, or present in this hour's or the previous hour's bucket.
func (c *channel) existing(lr *os.Root, key, bucket string) (string, bool) {
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
		if _, err := lr.Lstat(b + "/" + key); err == nil {
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
	// Never recreate log/ here: an unmounted share must not turn into an
	// empty local folder.
	r, err := os.OpenRoot(c.root)
	if err != nil {
		return fsError("dir: scan", c.root, err)
	}
	defer r.Close()
	lr, err := openSub(r, "log")
	if err != nil {
		return fsError("dir: scan", c.root, err)
	}
	defer lr.Close()
	folder, err := folderID(r)
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
	err = eachEntry(lr, ".", func(ent fs.DirEntry) {
		name := ent.Name()
		if !ent.IsDir() || !validBucket(name) { // a link to a folder is no bucket
			if classify(name, ent.IsDir()) == kindTemp {
				top.temp++
			} else {
				top.foreign++
			}
			return
		}
		if name < oldest {
			// Inside the log/ Root: a link swapped in is removed, never
			// followed.
			if err := lr.RemoveAll(name); err != nil {
				c.log.Warn("dir: prune expired bucket", "bucket", name, "err", err)
			} else {
				c.pruned++
			}
			return
		}
		present[name] = true
		info, err := lr.Lstat(name)
		if err != nil || !info.IsDir() {
			return // removed or replaced since it was listed
		}
		mt := info.ModTime()
		if last, ok := c.seen[name]; ok && !full && !c.dirty[name] && last.Equal(mt) && now.Sub(mt) > freshDir {
			return
		}
		var n counts
		err = eachEntry(lr, name, func(f fs.DirEntry) {
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
		})
		if err != nil {
			return
		}
		c.ignored[name] = n
		c.seen[name] = mt
	})
	if err != nil {
		return fsError("dir: scan", c.root, err)
	}
	c.ignored["log"] = top
	if full {
		c.countBoard(r)
	}
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
	for id := range c.noticed {
		if b, _, ok := strings.Cut(strings.TrimPrefix(id, "log/"), "/"); ok && strings.HasPrefix(id, "log/") && b < oldest {
			delete(c.noticed, id)
		}
	}
	return nil
}

// listBoard calls key for every item's name on the board (br) and counts
// its temporary and foreign files. Only names are read, never a file.
func listBoard(br *os.Root, key func(string)) (counts, error) {
	var n counts
	err := eachEntry(br, ".", func(e fs.DirEntry) {
		switch classify(e.Name(), e.IsDir()) {
		case kindItem:
			key(e.Name())
		case kindTemp:
			n.temp++
		default:
			n.foreign++
		}
	})
	return n, err
}

// countBoard counts the board's temporary and foreign files for Health on
// a full rescan: the daemon reads the board by key, so a Get never lists
// it. A board that cannot be listed is left to Put and Get to report.
// c.mu is held.
func (c *channel) countBoard(r *os.Root) {
	br, err := openSub(r, "board")
	if err != nil {
		delete(c.ignored, "board")
		return
	}
	defer br.Close()
	if n, err := listBoard(br, func(string) {}); err == nil {
		c.ignored["board"] = n
	}
}

// eachEntry calls f for every entry of the folder name inside r, reading
// the folder in chunks so that a folder of a million junk files costs a
// chunk of memory, not a million entries.
func eachEntry(r *os.Root, name string, f func(fs.DirEntry)) error {
	d, err := r.Open(name)
	if err != nil {
		return err
	}
	defer d.Close()
	for {
		ents, err := d.ReadDir(256)
		for _, e := range ents {
			f(e)
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// pending scans if a scan is due (or force) and returns the index ID and
// the entries after seq.
func (c *channel) pending(seq uint64, force bool) ([idLen]byte, []entry, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return c.idx.id, nil, errClosed
	}
	var err error
	if force || time.Since(c.lastScan) >= c.scanEvery()/2 {
		c.dirty = c.watch.takeDirty()
		err = c.scan(false)
	}
	return c.idx.id, c.idx.after(seq), err
}

// scanEvery is the time between two scans when nothing is noticed: the
// poll interval, or the slow safety-net rescan while the folder is watched.
func (c *channel) scanEvery() time.Duration {
	if c.watch.watching() {
		return c.cfg.RescanInterval.D()
	}
	return c.cfg.PollInterval.D()
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
		at, found := c.idx.at(cur.seq)
		c.mu.Unlock()
		switch {
		case cur.index != id:
			return sdk.Errorf(sdk.CodeCursorInvalid, "dir: subscribe: the cursor belongs to another index (the folder was replaced or wiped, or the state dir lost): resubscribe from the start")
		case cur.seq >= next:
			return sdk.Errorf(sdk.CodeCursorInvalid, "dir: subscribe: the cursor is ahead of the index (%d >= %d): resubscribe from the start", cur.seq, next)
		case found && cur.mark != ([markLen]byte{}) && markOf(at.id()) != cur.mark:
			return sdk.Errorf(sdk.CodeCursorInvalid, "dir: subscribe: the cursor names another file at its position (the state dir was restored from an older copy): resubscribe from the start")
		}
		pos = cur.seq
	} else {
		c.mu.Lock()
		id = c.idx.id
		c.mu.Unlock()
	}
	every := c.scanEvery()
	tick := time.NewTicker(every)
	defer tick.Stop()
	force := false
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		changed := c.watch.changes()
		if e := c.scanEvery(); e != every { // the watch failed: poll
			every = e
			tick.Reset(every)
		}
		now, batch, err := c.pending(pos, force)
		force = false
		switch {
		case errors.Is(err, errClosed):
			return fmt.Errorf("dir: subscribe: %w", err)
		case err != nil:
			c.log.Warn("dir: scan failed; retrying at the next poll", "err", err)
		case now != id:
			return sdk.Errorf(sdk.CodeCursorInvalid, "dir: subscribe: the folder was replaced or wiped: resubscribe from the start")
		}
		if len(batch) > 0 {
			if err := c.deliver(ctx, id, &pos, batch, sink); err != nil {
				return err
			}
			// A change noticed while the batch was scanned or delivered
			// (a long one: a flood of junk) closed changed, which the next
			// round replaces: scan for it now, not at the safety rescan.
			select {
			case <-changed:
				force = true
			default:
			}
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done:
			return fmt.Errorf("dir: subscribe: %w", errClosed)
		case <-tick.C:
		case <-changed:
			force = true
		}
	}
}

// deliver reads the files of batch in order and delivers them, moving
// *pos past each. Files that are gone or skipped (too large, special,
// unreadable) are passed over; a run of them at the end is delivered as a
// Skip, so that a restart does not read them again.
func (c *channel) deliver(ctx context.Context, id [idLen]byte, pos *uint64, batch []entry, sink sdk.Sink) error {
	lr, err := c.openSub("log")
	if err != nil {
		c.log.Warn("dir: cannot read log/; retrying at the next poll", "err", err)
		return nil
	}
	defer lr.Close()
	// One Root per bucket: a file is then one fstatat and one openat
	// away, not a walk from log/.
	var br *os.Root
	bucket := ""
	defer func() {
		if br != nil {
			br.Close()
		}
	}()
	var skipped uint64
	var skippedMark [markLen]byte
	for _, e := range batch {
		if e.bucket != bucket || br == nil {
			if br != nil {
				br.Close()
			}
			bucket = e.bucket
			if br, err = lr.OpenRoot(bucket); err != nil {
				br = nil
				if !errors.Is(err, fs.ErrNotExist) {
					c.log.Warn("dir: cannot read a bucket; retrying at the next poll", "bucket", bucket, "err", err)
					return nil
				}
			}
		}
		d, ok, err := c.read(br, e)
		if err != nil {
			return err
		}
		if !ok {
			skipped, skippedMark = e.seq, markOf(e.id())
			continue
		}
		d.Cursor = cursor{index: id, seq: e.seq, mark: markOf(e.id())}.encode()
		if err := sink.Deliver(ctx, d); err != nil {
			return err
		}
		*pos, skipped = e.seq, 0
	}
	if skipped != 0 {
		if err := sink.Deliver(ctx, sdk.Delivery{Skip: true, Cursor: cursor{index: id, seq: skipped, mark: skippedMark}.encode()}); err != nil {
			return err
		}
		*pos = skipped
	}
	return nil
}

// read loads one log file through br, its bucket (nil: the bucket is
// gone). ok is false for files that are gone or skipped.
func (c *channel) read(br *os.Root, e entry) (sdk.Delivery, bool, error) {
	if br == nil {
		return sdk.Delivery{}, false, nil
	}
	data, fi, err := readRegular(br, e.name, int64(c.cfg.MaxPayload))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return sdk.Delivery{}, false, nil
	case err != nil && c.skip("log/"+e.id(), err):
		return sdk.Delivery{}, false, nil
	case err != nil:
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
		return fmt.Errorf("dir: put: %w", sdk.CheckKey("board key", req.Key))
	}
	if len(req.Value) > c.cfg.MaxPayload {
		return sdk.Errorf(sdk.CodeTooLarge, "dir: put: value is %d bytes, max_payload is %d", len(req.Value), c.cfg.MaxPayload)
	}
	br, err := c.openSub("board")
	if err != nil {
		return fsError("dir: put", c.root, err)
	}
	defer br.Close()
	if err := writeFileIn(br, req.Key, req.Value); err != nil {
		return fsError("dir: put", c.root, err)
	}
	if err := syncDirIn(br, "."); err != nil {
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
	br, err := c.openSub("board")
	if err != nil {
		return sdk.GetResponse{}, fsError("dir: get", c.root, err)
	}
	defer br.Close()
	keys := req.Keys
	if len(keys) == 0 {
		n, err := listBoard(br, func(k string) { keys = append(keys, k) })
		if err != nil {
			return sdk.GetResponse{}, fsError("dir: get", c.root, err)
		}
		c.mu.Lock()
		c.ignored["board"] = n
		c.mu.Unlock()
	}
	var resp sdk.GetResponse
	total, limit := 0, max(maxBoardBytes, c.cfg.MaxPayload)
	for i, k := range keys {
		if !validKey(k) {
			continue // no such file can exist
		}
		data, fi, err := readRegular(br, k, int64(c.cfg.MaxPayload))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil && c.skip("board/"+k, err):
			continue
		case err != nil:
			return sdk.GetResponse{}, fsError("dir: get "+k, c.root, err)
		}
		if total += len(data); total > limit {
			c.log.Warn("dir: the board holds more than the answer may carry; the rest is left out", "limit", limit, "left_out", len(keys)-i)
			break
		}
		resp.Entries = append(resp.Entries, sdk.BoardEntry{Key: k, Value: data, Time: fi.ModTime()})
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
	lr, err := c.openSub("log")
	if err != nil {
		return sdk.DeleteResponse{}, fsError("dir: delete", c.root, err)
	}
	defer lr.Close()
	dirs := map[string]bool{}
	for i, id := range req.IDs {
		bucket, key, ok := strings.Cut(id, "/")
		if !ok || !validBucket(bucket) || !validKey(key) {
			resp.Errors[i] = sdk.Errorf(sdk.CodeNotFound, "dir: delete: %q is not a dir item ID (<bucket>/<key>)", id)
			continue
		}
		if err := lr.Remove(bucket + "/" + key); err != nil && !errors.Is(err, fs.ErrNotExist) {
			resp.Errors[i] = fsError("dir: delete "+id, c.root, err)
			continue
		}
		dirs[bucket] = true
	}
	for d := range dirs {
		if err := syncDirIn(lr, d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			c.log.Warn("dir: delete: sync", "dir", d, "err", err)
		}
	}
	return resp, nil
}

// Health reports the last scan's state and the counters: indexed items,
// ignored temporary and foreign files, pruned buckets, and files skipped
// for what they are (oversize, special, unreadable).
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
			"indexed":         int64(len(c.idx.entries)),
			"ignored_temp":    int64(ig.temp),
			"ignored_foreign": int64(ig.foreign),
			"pruned_buckets":  c.pruned,
			"scan_errors":     c.scanErrs,
			"watching":        0,
		},
	}
	for why, name := range skipCounters {
		h.Counters[name] = c.skipped[why]
	}
	if c.watch.watching() {
		h.Counters["watching"] = 1
		h.Counters["watch_wakeups"] = c.watch.events.Load()
		h.Counters["watch_overflows"] = c.watch.overflow.Load()
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
	c.watch.close()
	return c.idx.close()
}
