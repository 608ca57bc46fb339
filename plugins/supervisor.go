package plugins

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/host"
)

// ErrClosed is returned by calls on a closed Supervisor or Channel. It is
// sdk.ErrClosed, so a closed channel reads the same here as in-process.
var ErrClosed = sdk.ErrClosed

// Options configure a Supervisor.
type Options struct {
	// Dir is the plugins directory holding installed third-party adapters
	// and their manifest ("" for none).
	Dir string
	// Builtins are the names of the adapters built into this binary.
	Builtins []string
	// Command returns the command for a built-in adapter (default Builtin).
	// Tests inject their own.
	Command func(name string) *exec.Cmd
	// Logger receives supervision events and every adapter's log lines
	// (with adapter=NAME). Default slog.Default().
	Logger *slog.Logger
	// StartTimeout bounds one adapter start (default DefaultStartTimeout);
	// StopTimeout is the SIGTERM grace period before a kill (default 5s).
	StartTimeout, StopTimeout time.Duration
	// Together are built-in adapters that run in one process, to share one
	// Go runtime: Command(JoinKinds(Together)) starts it, and it must serve
	// each of them (sdk.ServeMany). A crash of one restarts them all. Each
	// built-in not named here runs in a process of its own.
	Together []string
	// MinBackoff and MaxBackoff bound the delay between restarts of a
	// crashed adapter (default 200ms and 1m); it doubles per failure, with
	// jitter, and resets once a process has run for StableAfter (default 1m).
	MinBackoff, MaxBackoff, StableAfter time.Duration
	// MemoryLimit caps each adapter process's memory in bytes (default
	// DefaultMemoryLimit; negative: no cap): RLIMIT_DATA and, for Go
	// adapters, GOMEMLIMIT at half of it (host.Config.MemoryLimit), and a
	// watch on its resident memory that kills a process above the limit.
	MemoryLimit int64
	// WatchEvery is how often each running process's memory is read and
	// its liveness checked (default 10s); HangAfter is how long a liveness
	// check may wait for an answer before the process counts as hung and is
	// killed (default 30s). A killed process is restarted with backoff like
	// a crashed one, and its channels' health says why.
	WatchEvery, HangAfter time.Duration
}

// DefaultMemoryLimit is each adapter process's memory limit unless
// Options.MemoryLimit says otherwise: an idle adapter holds 22-33 MB
// resident (BENCHMARKS.md #2); a channel that makes one hold a gigabyte is
// an attack.
const DefaultMemoryLimit = 1 << 30

// misbehaviourShown is how long a channel's health reports that its
// adapter process was killed for misbehaving.
const misbehaviourShown = time.Hour

// DefaultStartTimeout bounds an adapter's start up to its handshake and
// Info. A start takes about 0.1 s on an idle machine; the margin is for a
// loaded one, where a channel that missed it stayed down until a restart.
const DefaultStartTimeout = 30 * time.Second

// JoinKinds names the process serving several adapter kinds: "dir+git".
func JoinKinds(kinds []string) string { return strings.Join(kinds, "+") }

// SplitKinds is JoinKinds undone.
func SplitKinds(name string) []string { return strings.Split(name, "+") }

// Supervisor runs adapter processes, one per kind (or one for the kinds
// in Options.Together), and the channels on them.
type Supervisor struct {
	opts      Options
	logger    *slog.Logger
	installMu sync.Mutex

	mu     sync.Mutex
	procs  map[string]*proc
	closed bool
}

// New returns a Supervisor. It starts nothing: an adapter process starts on
// the first Open of a channel of its kind.
func New(opts Options) *Supervisor {
	if opts.Command == nil {
		opts.Command = Builtin
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = DefaultStartTimeout
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 200 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = time.Minute
	}
	if opts.StableAfter <= 0 {
		opts.StableAfter = time.Minute
	}
	if opts.MemoryLimit == 0 {
		opts.MemoryLimit = DefaultMemoryLimit
	}
	if opts.WatchEvery <= 0 {
		opts.WatchEvery = 10 * time.Second
	}
	if opts.HangAfter <= 0 {
		opts.HangAfter = 30 * time.Second
	}
	return &Supervisor{opts: opts, logger: opts.Logger, procs: map[string]*proc{}}
}

// Open configures a channel on adapter name, starting the adapter process
// if needed. Configuration errors are the adapter's own (errors.Is with
// sdk.ErrBadConfig, sdk.ErrAuthFailed, ...). The returned channel also
// implements sdk.Board, sdk.Deleter and sdk.Healther, and survives restarts
// of the process until Close.
func (s *Supervisor) Open(ctx context.Context, name string, req sdk.ConfigureRequest) (*Channel, error) {
	p, err := s.proc(name)
	if err != nil {
		return nil, err
	}
	c, gen, err := p.current(ctx, true)
	if err != nil {
		return nil, fmt.Errorf("plugins: open channel %s on %s: %w", req.ChannelID, name, err)
	}
	req.Secrets = maps.Clone(req.Secrets)
	req.Logger = nil // the adapter process has its own
	remote, err := p.kind(c, name).Configure(ctx, req)
	if err != nil {
		return nil, err
	}
	ch := &Channel{p: p, kind: name, req: req, remote: remote, gen: gen, caps: remote.Capabilities()}
	p.mu.Lock()
	if _, dup := p.channels[req.ChannelID]; dup {
		p.mu.Unlock()
		_ = remote.Close()
		return nil, fmt.Errorf("plugins: channel %s is already open on %s", req.ChannelID, name)
	}
	p.channels[req.ChannelID] = ch
	restarted := p.gen != gen
	p.mu.Unlock()
	if restarted { // the process died between Configure and here
		go ch.reconfigure(p.current(context.Background(), false))
	}
	return ch, nil
}

func (s *Supervisor) proc(name string) (*proc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("plugins: supervisor: %w", ErrClosed)
	}
	var kinds []string
	if slices.Contains(s.opts.Together, name) && slices.Contains(s.opts.Builtins, name) {
		kinds = s.opts.Together
		name = JoinKinds(kinds)
	}
	if p, ok := s.procs[name]; ok {
		return p, nil
	}
	sp, err := s.resolve(name)
	if err != nil {
		return nil, err
	}
	p := &proc{s: s, name: name, kinds: kinds, spec: sp, channels: map[string]*Channel{}, stop: make(chan struct{}), stopped: make(chan struct{})}
	s.procs[name] = p
	return p, nil
}

// Close closes every channel and stops every adapter process.
func (s *Supervisor) Close() error {
	s.mu.Lock()
	s.closed = true
	procs := sortedProcs(s.procs)
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(p.close)
	}
	wg.Wait()
	return nil
}

func sortedProcs(m map[string]*proc) []*proc {
	out := make([]*proc, 0, len(m))
	for _, p := range m {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// AdapterHealth is the state of one adapter kind.
type AdapterHealth struct {
	// Name is the adapter's, or JoinKinds of the adapters sharing the
	// process (Kinds).
	Name  string
	Kinds []string
	// Running is true while a process is up and connected.
	Running bool
	Pid     int
	// Restarts counts starts after the first.
	Restarts int
	// LastError is why the last process ended or failed to start (kept
	// after a successful restart).
	LastError error
	// Failed is set when the adapter will not be started again (its
	// executable changed since install, or it is unknown).
	Failed error
	// Memory is the process's resident memory in bytes when last watched,
	// MemoryLimit its cap (0: none).
	Memory, MemoryLimit int64
	// Misbehaved is why the process was last killed or died for its own
	// conduct (over its memory limit, hung), and when; nil if never.
	Misbehaved   error
	MisbehavedAt time.Time
	Channels     []ChannelHealth
}

// ChannelHealth is the state of one channel.
type ChannelHealth struct {
	ID string
	sdk.Health
}

// Health reports every adapter kind that was opened, and its channels.
func (s *Supervisor) Health(ctx context.Context) []AdapterHealth {
	s.mu.Lock()
	procs := sortedProcs(s.procs)
	s.mu.Unlock()
	out := make([]AdapterHealth, 0, len(procs))
	for _, p := range procs {
		p.mu.Lock()
		h := AdapterHealth{Name: p.name, Kinds: p.kinds, Running: p.client != nil, Restarts: p.restarts, LastError: p.lastErr, Failed: p.fatal,
			Memory: p.memory, Misbehaved: p.misbehaved, MisbehavedAt: p.misbehavedAt}
		if p.client != nil {
			h.Pid = p.client.Pid()
			h.MemoryLimit = p.client.MemoryLimit()
		}
		chs := make([]*Channel, 0, len(p.channels))
		for _, ch := range p.channels {
			chs = append(chs, ch)
		}
		p.mu.Unlock()
		sort.Slice(chs, func(i, j int) bool { return chs[i].req.ChannelID < chs[j].req.ChannelID })
		for _, ch := range chs {
			h.Channels = append(h.Channels, ChannelHealth{ID: ch.req.ChannelID, Health: ch.Health(ctx)})
		}
		out = append(out, h)
	}
	return out
}

// proc supervises the process of one adapter kind.
type proc struct {
	s     *Supervisor
	name  string
	kinds []string // the adapters the process serves together; nil for one
	spec  spec

	stop    chan struct{} // closed by close
	stopped chan struct{} // closed when run returns

	mu       sync.Mutex
	started  bool
	client   *host.Client  // nil while down
	gen      int           // increments with every process that came up
	attempt  chan struct{} // non-nil during a start; closed when it ends
	restarts int
	lastErr  error
	fatal    error
	nextTry  time.Time
	channels map[string]*Channel
	closed   bool

	memory       int64 // resident bytes when last watched
	killedFor    error // why the watch killed the running process
	misbehaved   error // why the last misbehaving process ended
	misbehavedAt time.Time
}

// current returns the running client and its generation. With wait it
// starts the process if needed and waits for the start in progress;
// otherwise it reports sdk.ErrUnavailable at once while the process is down.
func (p *proc) current(ctx context.Context, wait bool) (*host.Client, int, error) {
	p.mu.Lock()
	if !p.started && !p.closed {
		p.started = true
		p.attempt = make(chan struct{})
		go p.run()
	}
	for {
		switch {
		case p.closed:
			p.mu.Unlock()
			return nil, 0, fmt.Errorf("plugins: adapter %s: %w", p.name, ErrClosed)
		case p.client != nil:
			c, g := p.client, p.gen
			p.mu.Unlock()
			return c, g, nil
		case p.fatal != nil:
			err := p.fatal
			p.mu.Unlock()
			return nil, 0, err
		}
		if !wait || p.attempt == nil {
			err := p.unavailableLocked()
			p.mu.Unlock()
			return nil, 0, err
		}
		a := p.attempt
		p.mu.Unlock()
		select {
		case <-a:
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
		p.mu.Lock()
		wait = false
	}
}

// kind is the client of adapter kind on c, the process's client.
func (p *proc) kind(c *host.Client, kind string) *host.Client {
	if p.kinds == nil {
		return c
	}
	return c.Kind(kind)
}

func (p *proc) unavailableLocked() error {
	e := &sdk.Error{Code: sdk.CodeUnavailable, Message: fmt.Sprintf("adapter %s is restarting", p.name)}
	if p.lastErr != nil {
		e.Message += " after: " + p.lastErr.Error()
	}
	if d := time.Until(p.nextTry); d > 0 && p.attempt == nil {
		e.RetryAfter = d
	}
	return e
}

// run starts the process, restarts it when it dies, and configures the
// channels on every new process, until close.
func (p *proc) run() {
	defer close(p.stopped)
	logger := p.s.logger.With("adapter", p.name)
	failures := 0
	for first := true; ; first = false {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return
		}
		if p.attempt == nil {
			p.attempt = make(chan struct{})
		}
		if !first {
			p.restarts++
		}
		p.mu.Unlock()

		cmd := p.spec.command()
		ctx, cancel := context.WithTimeout(context.Background(), p.s.opts.StartTimeout+5*time.Second)
		c, err := host.Launch(ctx, host.Config{
			Cmd:          cmd,
			Name:         p.name,
			Logger:       p.s.logger,
			Checksum:     p.spec.checksum,
			StartTimeout: p.s.opts.StartTimeout,
			StopTimeout:  p.s.opts.StopTimeout,
			MemoryLimit:  max(p.s.opts.MemoryLimit, 0),
			Kinds:        p.kinds,
		})
		cancel()

		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			if c != nil {
				_ = c.Close()
			}
			return
		}
		var wait time.Duration
		if err != nil {
			p.lastErr = err
			wait = p.backoff(failures)
			failures++
			p.nextTry = time.Now().Add(wait)
			if errors.Is(err, host.ErrChecksum) {
				p.fatal = fmt.Errorf("plugins: adapter %s at %s was modified after it was installed and will not be run: %w",
					p.name, p.spec.where, err)
				logger.Error("adapter refused", "error", p.fatal)
			} else {
				logger.Error("adapter failed to start", "error", err)
			}
		} else {
			p.client = c // lastErr stays: why it was restarted
			p.gen++
		}
		close(p.attempt)
		p.attempt = nil
		gen := p.gen
		var chs []*Channel
		if err == nil {
			for _, ch := range p.channels {
				chs = append(chs, ch)
			}
		}
		fatal := p.fatal != nil
		p.mu.Unlock()
		if fatal {
			return
		}

		if err == nil {
			for _, ch := range chs {
				go ch.reconfigure(c, gen, nil)
			}
			up := time.Now()
			watchDone := make(chan struct{})
			go p.watch(c, watchDone)
			select {
			case <-c.Done():
			case <-p.stop:
				close(watchDone)
				_ = c.Close()
				return
			}
			close(watchDone)
			if time.Since(up) > p.s.opts.StableAfter {
				failures = 0
			}
			wait = p.backoff(failures)
			failures++
			_ = c.Close() // reap, release go-plugin's resources, drain stderr
			p.mu.Lock()
			p.client = nil
			p.lastErr = p.exitReason(c)
			if p.killedFor != nil || c.OutOfMemory() != "" {
				p.misbehaved, p.misbehavedAt = p.lastErr, time.Now()
			}
			p.killedFor = nil
			p.nextTry = time.Now().Add(wait)
			p.mu.Unlock()
		}
		logger.Warn("adapter down; restarting", "in", wait.Round(time.Millisecond), "error", p.lastErrOf())
		select {
		case <-time.After(wait):
		case <-p.stop:
			return
		}
	}
}

// exitReason says why c's process ended: killed by the watch, out of
// memory by its own account, or unexpectedly. Called with p.mu held.
func (p *proc) exitReason(c *host.Client) error {
	if p.killedFor != nil {
		return p.killedFor
	}
	if line := c.OutOfMemory(); line != "" {
		return fmt.Errorf("adapter %s (pid %d) ran out of memory under its limit of %s: %q", p.name, c.Pid(), mib(c.MemoryLimit()), line)
	}
	if last := lastLine(c.Stderr()); last != "" {
		return fmt.Errorf("adapter %s (pid %d) exited unexpectedly; its last stderr line: %q", p.name, c.Pid(), last)
	}
	return fmt.Errorf("adapter %s (pid %d) exited unexpectedly", p.name, c.Pid())
}

func lastLine(s string) string {
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// watch reads the process's resident memory and checks that it answers,
// every WatchEvery until done; a process over its memory limit or hung is
// killed, and run restarts it.
func (p *proc) watch(c *host.Client, done <-chan struct{}) {
	t := time.NewTicker(p.s.opts.WatchEvery)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		var why error
		rss, err := c.Memory()
		if err == nil {
			p.mu.Lock()
			p.memory = rss
			p.mu.Unlock()
			if limit := c.MemoryLimit(); limit > 0 && rss > limit {
				why = fmt.Errorf("adapter %s (pid %d) held %s, over its memory limit of %s; killed", p.name, c.Pid(), mib(rss), mib(limit))
			}
		}
		if why == nil {
			ctx, cancel := context.WithTimeout(context.Background(), p.s.opts.HangAfter)
			err := c.Ping(ctx)
			cancel()
			select {
			case <-done: // it ended while we asked
				return
			case <-c.Done():
				return
			default:
			}
			if err != nil {
				why = fmt.Errorf("adapter %s (pid %d) did not answer for %v: hung; killed (%w)", p.name, c.Pid(), p.s.opts.HangAfter, err)
			}
		}
		if why != nil {
			p.mu.Lock()
			p.killedFor = why
			p.mu.Unlock()
			p.s.logger.Error("adapter misbehaved; killing it", "adapter", p.name, "error", why)
			c.Kill()
			return
		}
	}
}

// mib formats a byte count in MiB.
func mib(n int64) string { return fmt.Sprintf("%d MiB", n>>20) }

func (p *proc) lastErrOf() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastErr
}

// backoff is MinBackoff·2^n capped at MaxBackoff, with jitter: a uniform
// pick from its upper half.
func (p *proc) backoff(n int) time.Duration {
	d := p.s.opts.MinBackoff
	for i := 0; i < n && d < p.s.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, p.s.opts.MaxBackoff)
	return d/2 + rand.N(d/2+1)
}

func (p *proc) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.stopped
		return
	}
	p.closed = true
	started := p.started
	chs := make([]*Channel, 0, len(p.channels))
	for _, ch := range p.channels {
		chs = append(chs, ch)
	}
	p.mu.Unlock()
	// The process closes every channel itself when it stops; closing them
	// one by one first would only add a round trip each.
	for _, ch := range chs {
		ch.forget()
	}
	close(p.stop)
	if started {
		<-p.stopped
	}
}

// fatalConfig reports whether a Configure error means the configuration
// must change before it can succeed.
func fatalConfig(err error) bool {
	switch sdk.CodeOf(err) {
	case sdk.CodeBadConfig, sdk.CodeAuthFailed, sdk.CodeNeedsUserAction, sdk.CodeInvalidArgument, sdk.CodeUnsupported:
		return true
	}
	return false
}

// Channel is a supervised channel. It stays valid across restarts of its
// adapter process and implements sdk.Channel, sdk.Board, sdk.Deleter and
// sdk.Healther.
type Channel struct {
	p    *proc
	kind string // the adapter's name
	req  sdk.ConfigureRequest

	mu     sync.Mutex
	remote sdk.Channel // configured on process generation gen
	gen    int
	caps   sdk.Capabilities
	err    error // the last re-Configure error
	gaveUp bool  // err is an unknown error retried MaxUnknownRetries times
	closed bool
}

var (
	_ sdk.Channel  = (*Channel)(nil)
	_ sdk.Board    = (*Channel)(nil)
	_ sdk.Deleter  = (*Channel)(nil)
	_ sdk.Healther = (*Channel)(nil)
)

// ID is the channel ID it was opened with.
func (ch *Channel) ID() string { return ch.req.ChannelID }

// reconfigure opens the channel again on process generation gen, retrying
// transient errors with backoff while that process lives. A configuration
// error is kept and reported; it is not retried.
func (ch *Channel) reconfigure(c *host.Client, gen int, err error) {
	if err != nil {
		return // no process to configure on; run will call again
	}
	logger := ch.p.s.logger.With("adapter", ch.p.name, "channel", ch.req.ChannelID)
	for try := 0; ; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), ch.p.s.opts.StartTimeout+30*time.Second)
		remote, err := ch.p.kind(c, ch.kind).Configure(ctx, ch.req)
		cancel()
		ch.mu.Lock()
		ch.p.mu.Lock()
		stale := ch.p.gen != gen
		ch.p.mu.Unlock()
		if ch.closed || stale || (ch.gen == gen && ch.remote != nil) {
			ch.mu.Unlock()
			if remote != nil {
				_ = remote.Close()
			}
			return
		}
		if err == nil {
			ch.remote, ch.gen, ch.err, ch.gaveUp, ch.caps = remote, gen, nil, false, remote.Capabilities()
			ch.mu.Unlock()
			logger.Info("channel reconfigured after adapter restart")
			return
		}
		if sdk.CodeOf(err) == sdk.CodeUnknown && try+1 >= sdk.MaxUnknownRetries {
			// An unclassified error that keeps coming back is no outage.
			err = fmt.Errorf("%w (gave up after %d attempts: the adapter did not say the error was transient)", err, try+1)
			ch.err, ch.gaveUp = err, true
			ch.mu.Unlock()
			logger.Error("channel reconfigure keeps failing with an unclassified error; giving up until the channel is reopened", "error", err)
			return
		}
		ch.err = err
		ch.mu.Unlock()
		if fatalConfig(err) {
			logger.Error("channel configuration rejected after restart; fix it and reopen the channel", "error", err)
			return
		}
		d := ch.p.backoff(try)
		logger.Warn("channel reconfigure failed; retrying", "in", d.Round(time.Millisecond), "error", err)
		select {
		case <-time.After(d):
		case <-c.Done():
			return
		}
	}
}

// current returns the remote channel on the running process, or why there
// is none.
func (ch *Channel) current() (sdk.Channel, error) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.closed {
		return nil, fmt.Errorf("plugins: channel %s: %w", ch.req.ChannelID, ErrClosed)
	}
	ch.p.mu.Lock()
	defer ch.p.mu.Unlock()
	if ch.p.fatal != nil {
		return nil, ch.p.fatal
	}
	if ch.p.client != nil && ch.gen == ch.p.gen && ch.remote != nil {
		return ch.remote, nil
	}
	if ch.err != nil && (fatalConfig(ch.err) || ch.gaveUp) {
		return nil, ch.err
	}
	return nil, ch.p.unavailableLocked()
}

// Capabilities are the channel's capabilities as last configured.
func (ch *Channel) Capabilities() sdk.Capabilities {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.caps
}

func (ch *Channel) Publish(ctx context.Context, req sdk.PublishRequest) (sdk.PublishResponse, error) {
	r, err := ch.current()
	if err != nil {
		return sdk.PublishResponse{}, err
	}
	return r.Publish(ctx, req)
}

// Subscribe runs on the current process. If the process dies it returns
// sdk.ErrUnavailable; resubscribe from the last durable cursor.
func (ch *Channel) Subscribe(ctx context.Context, req sdk.SubscribeRequest, sink sdk.Sink) error {
	r, err := ch.current()
	if err != nil {
		return err
	}
	return r.Subscribe(ctx, req, sink)
}

func (ch *Channel) Put(ctx context.Context, req sdk.PutRequest) error {
	r, err := ch.current()
	if err != nil {
		return err
	}
	return r.(sdk.Board).Put(ctx, req)
}

func (ch *Channel) Get(ctx context.Context, req sdk.GetRequest) (sdk.GetResponse, error) {
	r, err := ch.current()
	if err != nil {
		return sdk.GetResponse{}, err
	}
	return r.(sdk.Board).Get(ctx, req)
}

func (ch *Channel) Delete(ctx context.Context, req sdk.DeleteRequest) (sdk.DeleteResponse, error) {
	r, err := ch.current()
	if err != nil {
		return sdk.DeleteResponse{}, err
	}
	return r.(sdk.Deleter).Delete(ctx, req)
}

// Health is the remote channel's health, or HealthDown with the reason
// while its adapter is down or its configuration was rejected. For an hour
// after its adapter process was killed or died for misbehaving (over its
// memory limit, hung), the channel is at least degraded and says why: the
// process hosts every channel of its kind, and one of them fed it.
func (ch *Channel) Health(ctx context.Context) sdk.Health {
	r, err := ch.current()
	var h sdk.Health
	if err != nil {
		h = sdk.Health{State: sdk.HealthDown, Message: err.Error()}
	} else {
		h = r.(sdk.Healther).Health(ctx)
	}
	p := ch.p
	p.mu.Lock()
	why, at, restarts := p.misbehaved, p.misbehavedAt, p.restarts
	var others []string
	for id := range p.channels {
		if id != ch.req.ChannelID {
			others = append(others, id)
		}
	}
	p.mu.Unlock()
	if restarts > 0 {
		h.Counters = maps.Clone(h.Counters)
		if h.Counters == nil {
			h.Counters = map[string]int64{}
		}
		h.Counters["adapter_restarts"] = int64(restarts)
	}
	if why != nil && time.Since(at) < misbehaviourShown {
		if h.State == "" || h.State == sdk.HealthOK {
			h.State = sdk.HealthDegraded
		}
		msg := fmt.Sprintf("%s at %s, reading this channel", why, at.Format(time.TimeOnly))
		if len(others) > 0 {
			sort.Strings(others)
			msg = fmt.Sprintf("%s at %s, reading this channel or %s (same process)", why, at.Format(time.TimeOnly), strings.Join(others, ", "))
		}
		if h.Message != "" {
			msg += "; " + h.Message
		}
		h.Message = msg
	}
	return h
}

// Close closes the channel in its adapter process and forgets it.
func (ch *Channel) Close() error {
	if remote := ch.forget(); remote != nil {
		return remote.Close()
	}
	return nil
}

// forget marks the channel closed and drops it from its process; it
// returns the remote channel to close, nil if already closed.
func (ch *Channel) forget() sdk.Channel {
	ch.mu.Lock()
	if ch.closed {
		ch.mu.Unlock()
		return nil
	}
	ch.closed = true
	remote := ch.remote
	ch.remote = nil
	ch.mu.Unlock()
	ch.p.mu.Lock()
	if ch.p.channels[ch.req.ChannelID] == ch {
		delete(ch.p.channels, ch.req.ChannelID)
	}
	ch.p.mu.Unlock()
	return remote
}
