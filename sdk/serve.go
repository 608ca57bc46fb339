package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/remora-p2p/remora/sdk/internal/wire"
)

// ServeOption configures Serve and ServeListener.
type ServeOption func(*serveConfig)

type serveConfig struct {
	args   []string
	argSet bool
	logger *slog.Logger
	stdout io.Writer
	grace  time.Duration
}

// WithArgs sets the command-line arguments Serve interprets (default
// os.Args[1:]). A binary that serves an adapter behind a subcommand, such as
// `remora adapter dir describe`, passes the arguments after its own.
func WithArgs(args []string) ServeOption {
	return func(c *serveConfig) { c.args, c.argSet = args, true }
}

// WithLogger replaces the base logger channels log to. By default Serve logs
// JSON lines to stderr, which the host re-emits into its own log, through
// NewQuietHandler.
func WithLogger(l *slog.Logger) ServeOption {
	return func(c *serveConfig) { c.logger = l }
}

// WithOutput sets where `describe` prints (default os.Stdout).
func WithOutput(w io.Writer) ServeOption {
	return func(c *serveConfig) { c.stdout = w }
}

// WithGracePeriod bounds how long a stopping Serve waits for calls in flight
// before cutting them off (default 2s).
func WithGracePeriod(d time.Duration) ServeOption {
	return func(c *serveConfig) { c.grace = d }
}

// describeOutput is what `describe` prints: Info plus the wire version.
type describeOutput struct {
	ProtocolVersion int `json:"protocol_version"`
	Info
}

// ErrNotPlugin is returned by Serve when the process was not started by a
// remora host (the handshake cookie is missing).
var ErrNotPlugin = errors.New("sdk: not started by a remora host")

// Serve runs adapter a as a remora adapter process and returns when the host
// stops it (or on SIGTERM, or when the host is gone). main should exit
// non-zero when it returns an error.
//
// Serve owns the go-plugin handshake (a private cookie and
// VersionedPlugins keyed by ProtocolVersion), gRPC with the mTLS the host
// negotiates (AutoMTLS), a JSON slog handler on stderr (each channel's
// Logger adds channel=ID), and clean exit: every open channel is closed
// before Serve returns. With the single argument "describe" it prints Info
// as indented JSON to stdout and returns. Run by hand, it says what it is
// and returns ErrNotPlugin.
//
// One process hosts every channel the host configures on it.
func Serve(a Adapter, opts ...ServeOption) error {
	return serve(map[string]Adapter{"": a}, opts)
}

// ServeMany is Serve for several adapters in one process, each under its
// own kind name (the map key), so that they share one Go runtime. The
// host must launch the process with those kinds (sdk/host Config.Kinds);
// each kind is then exactly what Serve gives for one adapter. The remora
// binary serves its built-in adapters this way. It takes no "describe":
// describe one adapter with Serve.
func ServeMany(adapters map[string]Adapter, opts ...ServeOption) error {
	if len(adapters) == 0 {
		return errors.New("sdk: serve: no adapters")
	}
	for k := range adapters {
		if k == "" {
			return errors.New("sdk: serve: an adapter kind needs a name")
		}
	}
	return serve(adapters, opts)
}

func serve(adapters map[string]Adapter, opts []ServeOption) error {
	cfg := newServeConfig(opts)
	single, one := adapters[""]
	switch {
	case one && len(cfg.args) == 1 && cfg.args[0] == "describe":
		return describe(cfg.stdout, single.Info())
	case len(cfg.args) > 0:
		return fmt.Errorf("sdk: serve: unexpected arguments %q: the only argument an adapter takes is \"describe\"", cfg.args)
	}
	if os.Getenv(wire.MagicCookieKey) != wire.MagicCookieValue {
		if one {
			info := single.Info()
			fmt.Fprintf(os.Stderr, "This is the remora adapter %q (version %s, adapter protocol %d).\n"+
				"remora starts it itself; it is not meant to be run by hand.\n"+
				"Run it with the argument \"describe\" to see what it offers.\n",
				info.Name, info.Version, ProtocolVersion)
		} else {
			fmt.Fprintf(os.Stderr, "This process serves the remora adapters %s (adapter protocol %d).\n"+
				"remora starts it itself; it is not meant to be run by hand.\n",
				strings.Join(slices.Sorted(maps.Keys(adapters)), ", "), ProtocolVersion)
		}
		return ErrNotPlugin
	}

	// go-plugin replaces os.Stderr with a pipe it forwards over gRPC; logs
	// go to the real stderr, which the host parses line by line.
	stderr := os.Stderr
	level := levelFromEnv()
	logger := cfg.logger
	if logger == nil {
		// Quiet: a hostile channel must not fill the host's disk with
		// the same warning about the same item.
		logger = slog.New(NewQuietHandler(NewLogHandler(stderr, level), QuietOptions{}))
	}
	streams, cancelStreams := context.WithCancel(context.Background())
	srvs := make(map[string]*grpcServer, len(adapters))
	for kind, a := range adapters {
		l := logger
		if kind != "" {
			l = logger.With("kind", kind)
		}
		srvs[kind] = newGRPCServer(a, l, streams)
	}
	defer func() {
		cancelStreams()
		for _, srv := range srvs {
			srv.closeAll()
		}
	}()

	stopper := &stopper{grace: cfg.grace}
	stop := func(why string) {
		logger.Debug("adapter stopping", "reason", why)
		cancelStreams()
		stopper.stop()
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	defer signal.Stop(sigs)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-sigs:
			stop("SIGTERM")
		case <-done:
		}
	}()
	if fd := os.Getenv(wire.EnvLifeline); fd != "" {
		_ = os.Unsetenv(wire.EnvLifeline) // not for the adapter's own children
		if n, err := strconv.Atoi(fd); err == nil && n > 2 {
			f := os.NewFile(uintptr(n), "lifeline")
			go func() {
				if _, err := io.Copy(io.Discard, f); err != nil {
					logger.Warn("adapter lifeline unreadable; host exit goes unnoticed", "fd", n, "error", err)
					return
				}
				stop("host gone (lifeline closed)")
			}()
		}
	}

	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: plugin.HandshakeConfig{
			ProtocolVersion:  ProtocolVersion,
			MagicCookieKey:   wire.MagicCookieKey,
			MagicCookieValue: wire.MagicCookieValue,
		},
		VersionedPlugins: map[int]plugin.PluginSet{
			ProtocolVersion: {wire.PluginName: &grpcPlugin{srvs: srvs}},
		},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			gs := grpc.NewServer(append(opts, stopper.serverOptions()...)...)
			stopper.set(gs)
			return gs
		},
		Logger: hclog.New(&hclog.LoggerOptions{
			Name:       "go-plugin",
			Output:     stderr,
			JSONFormat: true,
			Level:      hclog.LevelFromString(strings.ToLower(level.String())),
		}),
	})
	if !stopper.started() {
		return errors.New("sdk: serve: go-plugin failed before serving (its log line above says why)")
	}
	return nil
}

// ServeListener serves adapter a over plain gRPC on l (no handshake, no
// TLS) until ctx ends, then closes every open channel. It is for tests,
// benchmarks and debugging in one process; sdk/host dials it.
func ServeListener(ctx context.Context, l net.Listener, a Adapter, opts ...ServeOption) error {
	cfg := newServeConfig(opts)
	logger := cfg.logger
	if logger == nil {
		logger = slog.New(NewLogHandler(os.Stderr, levelFromEnv()))
	}
	streams, cancelStreams := context.WithCancel(context.Background())
	srv := newGRPCServer(a, logger, streams)
	defer func() {
		cancelStreams()
		srv.closeAll()
	}()
	st := &stopper{grace: cfg.grace}
	gs := grpc.NewServer(st.serverOptions()...)
	wire.RegisterAdapterServer(gs, srv)
	st.set(gs)
	stop := context.AfterFunc(ctx, func() {
		cancelStreams()
		st.stop()
	})
	defer stop()
	if err := gs.Serve(l); err != nil {
		return fmt.Errorf("sdk: serve: %w", err)
	}
	return nil
}

func newServeConfig(opts []ServeOption) serveConfig {
	cfg := serveConfig{stdout: os.Stdout, grace: 2 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	if !cfg.argSet {
		cfg.args = os.Args[1:]
	}
	return cfg
}

// serverOptions are the gRPC server options: the wire's limits, windows
// and codec, and every call counted in flight so that a stop lets it finish.
func (s *stopper) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(wire.MaxMessageSize),
		grpc.MaxSendMsgSize(wire.MaxMessageSize),
		grpc.InitialWindowSize(wire.WindowSize),
		grpc.InitialConnWindowSize(wire.WindowSize),
		grpc.ForceServerCodecV2(wire.Codec),
		grpc.ChainUnaryInterceptor(s.track),
	}
}

func describe(w io.Writer, info Info) error {
	b, err := json.MarshalIndent(describeOutput{ProtocolVersion: ProtocolVersion, Info: info}, "", "  ")
	if err != nil {
		return fmt.Errorf("sdk: describe: %w", err)
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("sdk: describe: %w", err)
	}
	return nil
}

// stopper stops a gRPC server once the unary calls in flight (of every
// adapter the process serves) are done, or after a grace period. It does
// not use GracefulStop, which would wait for go-plugin's own never-ending
// streams. A stop requested before the server exists stops it as soon as
// it does.
type stopper struct {
	grace    time.Duration
	inflight atomic.Int64 // unary calls running
	mu       sync.Mutex
	gs       *grpc.Server
	stopped  bool
}

func (s *stopper) set(gs *grpc.Server) {
	s.mu.Lock()
	s.gs = gs
	stopped := s.stopped
	s.mu.Unlock()
	if stopped {
		gs.Stop()
	}
}

// track counts unary calls in flight.
func (s *stopper) track(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	return h(ctx, req)
}

func (s *stopper) idle() bool { return s.inflight.Load() == 0 }

func (s *stopper) started() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gs != nil
}

func (s *stopper) stop() {
	s.mu.Lock()
	gs := s.gs
	s.stopped = true
	s.mu.Unlock()
	if gs == nil {
		return
	}
	deadline := time.Now().Add(s.grace)
	for !s.idle() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	gs.Stop()
}

// levelFromEnv reads the log level the host asked for (default INFO).
func levelFromEnv() slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(os.Getenv(wire.EnvLogLevel))); err != nil {
		return slog.LevelInfo
	}
	return l
}

// hclogTime is the timestamp layout go-plugin's host parses.
const hclogTime = "2006-01-02T15:04:05.000000Z07:00"

// NewLogHandler returns the handler Serve logs through: one JSON object per
// line, with the message, level and time under go-plugin's keys "@message",
// "@level" (trace, debug, info, warn, error) and "@timestamp", and every
// attribute as its own key. The host re-emits each line into its own log
// with its level and attributes.
func NewLogHandler(w io.Writer, level slog.Leveler) slog.Handler {
	return slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				return slog.String("@timestamp", a.Value.Time().Format(hclogTime))
			case slog.LevelKey:
				return slog.String("@level", levelName(a.Value.Any().(slog.Level)))
			case slog.MessageKey:
				return slog.String("@message", a.Value.String())
			}
			return a
		},
	})
}

func levelName(l slog.Level) string {
	switch {
	case l < slog.LevelDebug:
		return "trace"
	case l < slog.LevelInfo:
		return "debug"
	case l < slog.LevelWarn:
		return "info"
	case l < slog.LevelError:
		return "warn"
	}
	return "error"
}
