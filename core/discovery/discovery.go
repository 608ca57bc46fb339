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

// Status is one box in the report.
type Status struct {
	Name       string
	Configured bool
	// Reachable is true once the source ran without error.
	Reachable bool
	LastError string
	Found     int
	LastFound time.Time
}

// Options configure Discovery. The zero value is usable.
type Options struct {
	Logger *slog.Logger
	Now    func() time.Time
	// Backoff bounds source restarts (defaults 1 s to 5 min).
	MinBackoff, MaxBackoff time.Duration
}

// Discovery runs sources and keeps the report.
type Discovery struct {
	opts    Options
	mu      sync.Mutex
	status  map[string]*Status
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
	d := &Discovery{opts: opts, status: map[string]*Status{}, firstBy: map[peer.ID]string{}, sources: sources}
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
	st.Found++
	st.LastFound = f.At
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

// Boxes returns the report, in the order boxes were added.
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
		switch {
		case errors.Is(err, ErrNotConfigured):
			st.Configured = false
		case err != nil:
			st.LastError = err.Error()
		default:
			st.Reachable, st.LastError = true, ""
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
