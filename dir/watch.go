package dir

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Values of Config.Watch.
const (
	watchAuto = "auto"
	watchOn   = "on"
	watchOff  = "off"
)

// settle is how long a watcher gathers events before it wakes Subscribe:
// one file arriving is several events (create, write, rename), and a burst
// of files should cost one scan, not one per event.
const settle = 20 * time.Millisecond

// watcher tells Subscribe when log/ or one of its bucket folders changed,
// from the operating system's notifications (inotify on Linux), so that an
// idle channel does no work. It never replaces a scan: it only says when to
// scan, and the slow rescan still runs in case an event was missed.
type watcher struct {
	fw   *fsnotify.Watcher
	log  *slog.Logger
	root string // log/
	// retention is the channel's: older buckets are not watched.
	retention time.Duration
	watched   int // bucket folders watched
	stop      chan struct{}
	done      chan struct{}

	events   atomic.Int64 // notifications delivered to Subscribe
	overflow atomic.Int64 // queue overflows (a rescan follows each)

	mu      sync.Mutex
	changed chan struct{}   // closed and replaced on every change
	dirty   map[string]bool // bucket folders with events since takeDirty
	err     error           // why the watch stopped, if it did
}

// maxWatched bounds the bucket folders watched (retention allows 168 a
// week); a folder stuffed with bucket-named junk costs no more watches.
const maxWatched = 1024

// startWatch watches logDir and its bucket folders within retention, or
// returns why it cannot (no watch support, out of inotify watches, a
// network filesystem under "auto", log/ not a plain folder); the channel
// then polls. The watch only says when to scan: what is read, and how, is
// the scan's business (open.go).
func startWatch(logDir, mode string, retention time.Duration, log *slog.Logger) (*watcher, error) {
	if mode == watchOff {
		return nil, errors.New("watch is off in the channel's config")
	}
	if mode == watchAuto {
		if kind, remote := remoteFS(logDir); remote {
			return nil, errors.New("the folder is on a " + kind + " filesystem, whose remote changes no local watch sees (set \"watch\": \"on\" to watch it anyway)")
		}
	}
	if fi, err := os.Lstat(logDir); err != nil || !fi.IsDir() {
		return nil, errors.New("log/ is not a folder")
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	w := &watcher{fw: fw, log: log, root: logDir, retention: retention, stop: make(chan struct{}), done: make(chan struct{}), changed: make(chan struct{}), dirty: map[string]bool{}}
	if err := fw.Add(logDir); err != nil {
		fw.Close()
		return nil, err
	}
	d, err := os.Open(logDir)
	if err != nil {
		fw.Close()
		return nil, err
	}
	defer d.Close()
	for {
		ents, err := d.ReadDir(256)
		for _, e := range ents {
			if err := w.addBucket(e.Name(), e.IsDir()); err != nil {
				fw.Close()
				return nil, err
			}
		}
		if err != nil { // io.EOF, or the folder failing: the scan says which
			break
		}
	}
	go w.run()
	return w, nil
}

// addBucket watches the bucket folder name if it is one within retention.
func (w *watcher) addBucket(name string, isDir bool) error {
	if !isDir || !validBucket(name) || name < bucketOf(time.Now().Add(-w.retention)) || w.watched >= maxWatched {
		return nil
	}
	if err := w.fw.Add(filepath.Join(w.root, name)); err != nil {
		return err
	}
	w.watched++
	return nil
}

// changes returns a channel that is closed at the next change. Take it
// before scanning, so that a change during the scan is not lost.
func (w *watcher) changes() <-chan struct{} {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.changed
}

// takeDirty returns the buckets that had events since the last call. A
// scan re-reads them whatever their directory times say (some filesystems
// do not update them).
func (w *watcher) takeDirty() map[string]bool {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	d := w.dirty
	w.dirty = map[string]bool{}
	return d
}

// watching reports whether the watch is still running.
func (w *watcher) watching() bool {
	if w == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err == nil
}

func (w *watcher) notify() {
	w.events.Add(1)
	w.mu.Lock()
	close(w.changed)
	w.changed = make(chan struct{})
	w.mu.Unlock()
}

func (w *watcher) run() {
	defer close(w.done)
	var flush <-chan time.Time
	var t *time.Timer
	pending := false
	arm := func() {
		if pending {
			return
		}
		pending = true
		if t == nil {
			t = time.NewTimer(settle)
		} else {
			t.Reset(settle)
		}
		flush = t.C
	}
	for {
		select {
		case <-w.stop:
			return
		case <-flush:
			pending, flush = false, nil
			w.notify()
		case ev, ok := <-w.fw.Events:
			if !ok {
				w.fail(errors.New("the watch closed"))
				return
			}
			if b := filepath.Base(filepath.Dir(ev.Name)); filepath.Dir(filepath.Dir(ev.Name)) == w.root && validBucket(b) {
				w.mu.Lock()
				w.dirty[b] = true
				w.mu.Unlock()
			}
			// A new bucket folder: watch it too, then scan (files may have
			// landed in it before the watch did).
			if ev.Has(fsnotify.Create) && filepath.Dir(ev.Name) == w.root {
				if fi, err := os.Lstat(ev.Name); err == nil {
					if err := w.addBucket(filepath.Base(ev.Name), fi.IsDir()); err != nil {
						w.fail(err)
						return
					}
				}
			}
			arm()
		case err, ok := <-w.fw.Errors:
			if !ok {
				w.fail(errors.New("the watch closed"))
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				// Events were dropped: a scan finds what they said.
				w.overflow.Add(1)
				arm()
				continue
			}
			w.fail(err)
			return
		}
	}
}

// fail stops relying on the watch: Subscribe polls from now on.
func (w *watcher) fail(err error) {
	select {
	case <-w.stop: // closing, not failing
		return
	default:
	}
	w.log.Warn("dir: folder watch failed; polling instead", "err", err)
	w.mu.Lock()
	w.err = err
	close(w.changed)
	w.changed = make(chan struct{})
	w.mu.Unlock()
}

func (w *watcher) close() {
	if w == nil {
		return
	}
	close(w.stop)
	w.fw.Close()
	<-w.done
}
