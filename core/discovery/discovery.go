package discovery

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// Found is one discovery result.
type Found struct {
	Peer  peer.ID
	Addrs []ma.Multiaddr
	// Relay is true when the peer offers to relay (bootstrap lists, presence).
	Relay bool
	// Source is the box that found it ("mdns", "channel:git-main", ...).
	Source string
	At     time.Time
}

// Source is one way of finding peers. Run reports what it finds through emit
// until ctx ends; a returned error is shown in the report and the source is
// restarted with backoff, unless it wraps ErrNotConfigured.
type Source interface {
	Name() string
	Run(ctx context.Context, emit func(Found)) error
}

// ErrNotConfigured means the source has nothing to do (no DNS name set, no
// URL): it is reported as not configured and not restarted.
var ErrNotConfigured = errors.New("discovery: source not configured")

// Status is one box in the report (`remora doctor`).
type Status struct {
	Name string
	// Configured is false for a box that is off or lacks settings; Fix then
	// says how to turn it on.
	Configured bool
	// Reachable is true once the box worked (a lookup, a read) without error.
	Reachable   bool
	LastAttempt time.Time
	LastSuccess time.Time
	LastError   string
	// Fix says what to do about LastError, or how to configure the box.
	Fix string
	// Found counts the distinct members the box reported.
	Found     int
	LastFound time.Time
	// Detail says what the box is doing (mDNS: on which networks it runs).
	Detail string
}

// Options configure Discovery. The zero value is usable.
type Options struct {
	Logger *slog.Logger
	Now    func() time.Time
	// Backoff bounds source restarts (defaults 1 s to 5 min).
	MinBackoff, MaxBackoff time.Duration
}

// maxFoundPerBox bounds the set of distinct peers counted per box.
const maxFoundPerBox = 4096

// Discovery runs sources and keeps the report.
type Discovery struct {
	opts    Options
	mu      sync.Mutex
	status  map[string]*Status
	found   map[string]map[peer.ID]struct{}
	order   []string
	firstBy map[peer.ID]string
	sources []Source
}

// New returns a Discovery with the given sources (in bootstrap order).
func New(opts Options, sources ...Source) *Discovery {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Minute
	}
	d := &Discovery{opts: opts, status: map[string]*Status{}, found: map[string]map[peer.ID]struct{}{},
		firstBy: map[peer.ID]string{}, sources: sources}
	for _, s := range sources {
		d.box(s.Name()).Configured = true
	}
	return d
}

// With adds sources (to a Discovery that has not run yet) and returns it.
func (d *Discovery) With(sources ...Source) *Discovery {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sources = append(d.sources, sources...)
	for _, s := range sources {
		d.box(s.Name()).Configured = true
	}
	return d
}

func (d *Discovery) box(name string) *Status {
	st, ok := d.status[name]
	if !ok {
		st = &Status{Name: name}
		d.status[name] = st
		d.order = append(d.order, name)
	}
	return st
}

// Declare puts a box in the report (in the order declared: cheapest
// first). A box that is not configured carries fix: how to turn it on.
func (d *Discovery) Declare(name string, configured bool, fix string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.box(name)
	st.Configured = configured
	if !configured {
		st.Fix = fix
	}
}

// Note sets the detail line of box name.
func (d *Discovery) Note(name, detail string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.box(name).Detail = detail
}

// Attempt records that box name is trying (a lookup, a read, an announcement).
func (d *Discovery) Attempt(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.box(name).LastAttempt = d.opts.Now()
}

// Succeeded records that box name worked.
func (d *Discovery) Succeeded(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.box(name)
	now := d.opts.Now()
	if st.LastAttempt.IsZero() {
		st.LastAttempt = now
	}
	st.LastSuccess, st.Reachable, st.LastError, st.Fix = now, true, "", ""
}

// Failed records that box name failed with err; fix says what to do.
func (d *Discovery) Failed(name string, err error, fix string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.box(name)
	if st.LastAttempt.IsZero() {
		st.LastAttempt = d.opts.Now()
	}
	st.LastError, st.Fix = err.Error(), fix
}

// Report records a result found outside a Source's Run (a presence record
// from a channel, an mDNS hit, a peer exchange), and returns it for chaining.
func (d *Discovery) Report(f Found) Found {
	if f.At.IsZero() {
		f.At = d.opts.Now()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.box(f.Source)
	st.Configured, st.Reachable = true, true
	if st.LastAttempt.IsZero() {
		st.LastAttempt = f.At
	}
	st.LastSuccess, st.LastFound = f.At, f.At
	set := d.found[f.Source]
	if set == nil {
		set = map[peer.ID]struct{}{}
		d.found[f.Source] = set
	}
	if len(set) < maxFoundPerBox {
		set[f.Peer] = struct{}{}
	}
	st.Found = len(set)
	if _, ok := d.firstBy[f.Peer]; !ok {
		d.firstBy[f.Peer] = f.Source
	}
	return f
}

// FoundBy names the box that found peer first ("" if none did).
func (d *Discovery) FoundBy(p peer.ID) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.firstBy[p]
}

// Boxes returns the report, in the order boxes were declared or added.
func (d *Discovery) Boxes() []Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Status, 0, len(d.order))
	for _, n := range d.order {
		out = append(out, *d.status[n])
	}
	return out
}

// Run runs every source until ctx ends, passing each result to emit after
// recording it.
func (d *Discovery) Run(ctx context.Context, emit func(Found)) error {
	var wg sync.WaitGroup
	for _, s := range d.sources {
		wg.Go(func() { d.runSource(ctx, s, emit) })
	}
	wg.Wait()
	return ctx.Err()
}

func (d *Discovery) runSource(ctx context.Context, s Source, emit func(Found)) {
	backoff := d.opts.MinBackoff
	for ctx.Err() == nil {
		err := s.Run(ctx, func(f Found) {
			f.Source = s.Name()
			emit(d.Report(f))
		})
		if ctx.Err() != nil {
			return
		}
		d.mu.Lock()
		st := d.box(s.Name())
		now := d.opts.Now()
		st.LastAttempt = now
		switch {
		case errors.Is(err, ErrNotConfigured):
			st.Configured = false
		case err != nil:
			st.LastError = err.Error()
		default:
			st.Reachable, st.LastError, st.LastSuccess = true, "", now
		}
		d.mu.Unlock()
		if errors.Is(err, ErrNotConfigured) {
			return
		}
		if err != nil {
			d.opts.Logger.Warn("discovery source failed", "source", s.Name(), "err", err)
		}
		// Sources that return nil are one-shot lookups: run again later.
		wait := backoff + rand.N(backoff/2+1)
		backoff = min(2*backoff, d.opts.MaxBackoff)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// Static is a source that reports a fixed list once (the peer cache, a
// configured peer).
type Static struct {
	Label string
	Peers func() []Found
}

func (s Static) Name() string { return s.Label }

func (s Static) Run(ctx context.Context, emit func(Found)) error {
	peers := s.Peers()
	if len(peers) == 0 {
		return nil
	}
	for _, f := range slices.Clone(peers) {
		emit(f)
	}
	<-ctx.Done()
	return nil
}
