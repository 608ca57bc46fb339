package host

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/internal/wire"
)

// Config says how to start one adapter process.
type Config struct {
	// Cmd is the unstarted adapter command. Launch runs it as given: the
	// caller resolves the path (nothing is looked up in PATH here). When
	// Cmd.Env is nil the adapter gets only a few variables of the host's
	// environment (PATH, HOME, TMPDIR, locale, TZ), never its secrets.
	Cmd *exec.Cmd
	// Name is the adapter name used in logs (adapter=NAME) and errors.
	Name string
	// Logger receives the adapter's log lines and go-plugin's own
	// (default slog.Default()).
	Logger *slog.Logger
	// Checksum, if set, is the SHA-256 the executable must have; a
	// mismatch refuses to start it (ErrChecksum).
	Checksum []byte
	// StartTimeout bounds the start up to the handshake and Info
	// (default 10s).
	StartTimeout time.Duration
	// StopTimeout is how long Close waits after SIGTERM before it kills the
	// process (default 5s).
	StopTimeout time.Duration
	// MemoryLimit caps the process's memory in bytes (0: no cap). The
	// growth of the process's data segment (heap, private mappings, thread
	// stacks) beyond what it holds at its handshake is limited to it with
	// RLIMIT_DATA, from that moment, before it is given any channel;
	// processes it starts inherit the limit. A
	// Go adapter also gets GOMEMLIMIT at half of it (unless Cmd.Env sets
	// one), so that its collector works hard well before the hard limit.
	// An adapter over the limit fails to allocate and, if written in Go,
	// dies with "out of memory" (Client.OutOfMemory).
	MemoryLimit int64
	// Kinds, if set, are the adapters the process serves together
	// (sdk.ServeMany); Client.Kind returns each. Unset, the process serves
	// one adapter (sdk.Serve).
	Kinds []string
}

// ErrChecksum is returned by Launch when the executable's SHA-256 is not
// the pinned one: the file changed since it was installed.
var ErrChecksum = errors.New("adapter executable does not match its pinned SHA-256")

// envAllow is the part of the host's environment an adapter inherits when
// Config.Cmd.Env is nil.
var envAllow = []string{"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "USER", "SSL_CERT_FILE", "SSL_CERT_DIR"}

// Launch starts the adapter process, performs the go-plugin handshake with
// AutoMTLS, and reads its Info. ctx bounds the start only; the process
// lives until Close or until it exits (Done).
func Launch(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Cmd == nil {
		return nil, errors.New("host: launch: no command")
	}
	if cfg.Name == "" {
		cfg.Name = cfg.Cmd.Path
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 10 * time.Second
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 5 * time.Second
	}
	fail := func(err error) (*Client, error) {
		return nil, fmt.Errorf("host: launch adapter %s: %w", cfg.Name, err)
	}
	logger := cfg.Logger.With("adapter", cfg.Name)
	cmd := cfg.Cmd

	if cmd.Env == nil {
		for _, k := range envAllow {
			if v, ok := os.LookupEnv(k); ok {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
		}
	}
	cmd.Env = append(cmd.Env, wire.EnvLogLevel+"="+levelOf(logger).String())
	if cfg.MemoryLimit > 0 && !hasEnv(cmd.Env, "GOMEMLIMIT") {
		cmd.Env = append(cmd.Env, "GOMEMLIMIT="+goMemLimit(cfg.MemoryLimit))
	}

	// The lifeline: the adapter holds the read end and exits on EOF, which
	// happens however the host ends (go-plugin gives the adapter the host's
	// own stdin, so stdin cannot serve).
	lifeR, lifeW, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	cmd.ExtraFiles = append(cmd.ExtraFiles, lifeR)
	cmd.Env = append(cmd.Env, wire.EnvLifeline+"="+strconv.Itoa(2+len(cmd.ExtraFiles)))

	var secure *plugin.SecureConfig
	if len(cfg.Checksum) > 0 {
		secure = &plugin.SecureConfig{Checksum: cfg.Checksum, Hash: sha256.New()}
	}
	stderrTail := &tail{}
	cp := &clientPlugin{}
	pc := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig: plugin.HandshakeConfig{
			MagicCookieKey:   wire.MagicCookieKey,
			MagicCookieValue: wire.MagicCookieValue,
		},
		VersionedPlugins: map[int]plugin.PluginSet{
			sdk.ProtocolVersion: {wire.PluginName: cp},
		},
		Cmd:              cmd,
		SecureConfig:     secure,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		StartTimeout:     cfg.StartTimeout,
		Logger:           newHCLog(logger),
		Stderr:           stderrTail,
		SyncStdout:       newLineWriter(logger.With("stream", "stdout"), slog.LevelDebug),
		SyncStderr:       newLineWriter(logger.With("stream", "stderr"), slog.LevelDebug),
		SkipHostEnv:      true,
		GRPCDialOptions:  dialOptions(),
	})

	type started struct {
		conn *grpc.ClientConn
		done context.Context
		err  error
	}
	ch := make(chan started, 1)
	go func() {
		rpc, err := pc.Client()
		if err != nil {
			ch <- started{err: err}
			return
		}
		raw, err := rpc.Dispense(wire.PluginName)
		if err != nil {
			ch <- started{err: err}
			return
		}
		d := raw.(*dispensed)
		ch <- started{conn: d.conn, done: d.done}
	}()
	var st started
	select {
	case st = <-ch:
	case <-ctx.Done():
		pc.Kill()
		<-ch
		st = started{err: ctx.Err()}
	}
	_ = lifeR.Close()
	if st.err != nil {
		pc.Kill()
		_ = lifeW.Close()
		return fail(startError(st.err, stderrTail.String(), cfg.StartTimeout))
	}

	pid := 0
	if cmd.Process != nil {
		pid = cmd.Process.Pid
	}
	var dataLimit int64
	if cfg.MemoryLimit > 0 && pid != 0 {
		if dataLimit, err = limitMemory(pid, cfg.MemoryLimit); err != nil {
			// The supervisor's watch on resident memory still holds.
			logger.Warn("adapter runs without a hard memory limit", "error", err)
		}
	}
	closeFn := func() error {
		defer func() { _ = lifeW.Close() }()
		if cmd.Process != nil {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-st.done.Done():
			case <-time.After(cfg.StopTimeout):
				logger.Warn("adapter did not exit after SIGTERM; killing it", "grace", cfg.StopTimeout)
			}
		}
		pc.Kill() // go-plugin shutdown, then SIGKILL; waits for the process
		return nil
	}
	infoCtx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	var c *Client
	if len(cfg.Kinds) == 0 {
		c, err = newClient(infoCtx, cfg.Name, st.conn, st.done.Done(), pid, closeFn)
		if err != nil {
			_ = closeFn()
			return fail(err)
		}
	} else {
		c = &Client{name: cfg.Name, done: st.done.Done(), pid: pid, close: closeFn, kinds: map[string]*Client{}}
		for _, kind := range cfg.Kinds {
			k, err := newClient(infoCtx, kind, wire.KindConn(st.conn, kind), c.done, pid, c.Close)
			if err != nil {
				_ = closeFn()
				return fail(err)
			}
			c.kinds[kind] = k
		}
	}
	health := healthClient(st.conn)
	kill := func() {
		if cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
	}
	for _, x := range append([]*Client{c}, slices.Collect(maps.Values(c.kinds))...) {
		x.limit, x.dataLimit, x.stderr, x.health, x.kill = cfg.MemoryLimit, dataLimit, stderrTail, health, kill
	}
	return c, nil
}

// startError explains a failed start in one sentence a user can act on:
// what the adapter did instead of the handshake (go-plugin's own words in
// parentheses), then its last stderr lines.
func startError(err error, stderr string, timeout time.Duration) error {
	if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
		return fmt.Errorf("%w (reinstall it with `remora adapter install`)", ErrChecksum)
	}
	first, _, _ := strings.Cut(err.Error(), "\n")
	var what string
	switch {
	case strings.HasPrefix(first, "Unrecognized remote plugin message: "):
		line := strings.TrimPrefix(first, "Unrecognized remote plugin message: ")
		if line == "" { // stdout closed: it exited, or closed stdout, first
			what, first = "exited before printing its handshake line (a crash at start, or a missing library or interpreter)", "no handshake line"
			break
		}
		what = fmt.Sprintf("printed %q where its handshake line belongs, want 1|1|tcp|127.0.0.1:PORT|grpc|CERT on stdout (docs/adapter-protocol.md)", shorten(line, 120))
		first = "unrecognized handshake"
	case first == "plugin exited before we could connect":
		what = "exited before printing its handshake line (a crash at start, or a missing library or interpreter)"
	case first == "timeout while waiting for plugin to start":
		what = fmt.Sprintf("printed no handshake line within %s", timeout)
	case strings.HasPrefix(strings.ToLower(first), "incompatible api version with plugin."):
		what = fmt.Sprintf("speaks another adapter protocol than this remora (%d): install a build of the adapter for protocol %d", sdk.ProtocolVersion, sdk.ProtocolVersion)
	case strings.HasPrefix(first, "incompatible core API version"), strings.HasPrefix(first, "error parsing core protocol version"):
		what = "printed a handshake line with another go-plugin core protocol than 1"
	default:
		what = "failed to start"
	}
	out := fmt.Errorf("%s (go-plugin: %s)", what, first)
	if stderr != "" {
		out = fmt.Errorf("%w; its last stderr lines:\n%s", out, indent(stderr))
	}
	return out
}

func shorten(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func indent(s string) string { return "\t" + strings.ReplaceAll(s, "\n", "\n\t") }

// levelOf is the lowest level l logs at.
func levelOf(l *slog.Logger) slog.Level {
	for _, lv := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn} {
		if l.Enabled(context.Background(), lv) {
			return lv
		}
	}
	return slog.LevelError
}

// clientPlugin is the host side of the go-plugin plugin; sdk.Serve holds
// the adapter side.
type clientPlugin struct {
	plugin.NetRPCUnsupportedPlugin
}

type dispensed struct {
	conn *grpc.ClientConn
	done context.Context
}

func (p *clientPlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error {
	return errors.New("host: the host side serves nothing")
}

// GRPCClient is called by Dispense; done ends when the process exits.
func (p *clientPlugin) GRPCClient(done context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return &dispensed{conn: conn, done: done}, nil
}

// dialOptions are the gRPC client options of every connection to an
// adapter: the wire's message limit, flow-control window and codec.
func dialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(wire.MaxMessageSize),
			grpc.MaxCallSendMsgSize(wire.MaxMessageSize),
			grpc.ForceCodecV2(wire.Codec),
		),
		grpc.WithInitialWindowSize(wire.WindowSize),
		grpc.WithInitialConnWindowSize(wire.WindowSize),
	}
}
