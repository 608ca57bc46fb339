package host_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/host"
	"github.com/remora-p2p/remora/sdk/host/hosttest"
	"github.com/remora-p2p/remora/sdk/internal/wire"
)

// envChild selects what the re-executed test binary does (go-plugin's own
// helper-process trick): it becomes an adapter process, well or badly
// behaved.
const envChild = "REMORA_HOST_TEST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(envChild); mode != "" {
		os.Exit(child(mode))
	}
	os.Exit(m.Run())
}

// child runs one kind of adapter process and returns its exit status.
func child(mode string) int {
	switch mode {
	case "serve":
		return serve(hosttest.New())
	case "listen":
		return listen()
	case "wrong-cookie":
		// An adapter built against another host: a different cookie.
		plugin.Serve(&plugin.ServeConfig{
			HandshakeConfig:  plugin.HandshakeConfig{ProtocolVersion: 1, MagicCookieKey: "OTHER_APP_PLUGIN", MagicCookieValue: "x"},
			VersionedPlugins: map[int]plugin.PluginSet{1: {wire.PluginName: emptyPlugin{}}},
			GRPCServer:       plugin.DefaultGRPCServer,
		})
		return 0
	case "wrong-version":
		// Our cookie, but only a future protocol version.
		plugin.Serve(&plugin.ServeConfig{
			HandshakeConfig:  plugin.HandshakeConfig{MagicCookieKey: wire.MagicCookieKey, MagicCookieValue: wire.MagicCookieValue},
			VersionedPlugins: map[int]plugin.PluginSet{sdk.ProtocolVersion + 1: {wire.PluginName: emptyPlugin{}}},
			GRPCServer:       plugin.DefaultGRPCServer,
		})
		return 0
	case "slow-start":
		time.Sleep(time.Minute)
		return serve(hosttest.New())
	case "stderr-flood":
		// Before and while serving, the adapter floods stderr with log
		// lines and raw text.
		logger := slog.New(sdk.NewLogHandler(os.Stderr, slog.LevelDebug))
		for i := range floodLines {
			logger.Info("flood", "i", i, "pad", strings.Repeat("x", 200))
			fmt.Fprintf(os.Stderr, "raw line %d\n", i)
		}
		return serve(hosttest.New())
	case "ignore-sigterm":
		return serve(stubborn{hosttest.New()})
	case "orphan-host":
		return orphanHost()
	case "exit-early":
		fmt.Fprintln(os.Stderr, "adapter: cannot start: state directory is not writable")
		return 2
	}
	fmt.Fprintf(os.Stderr, "unknown child mode %q\n", mode)
	return 2
}

const floodLines = 2000

func serve(a sdk.Adapter) int {
	if err := sdk.Serve(a, sdk.WithArgs(nil)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// emptyPlugin serves nothing; the bad children never get that far.
type emptyPlugin struct{ plugin.NetRPCUnsupportedPlugin }

func (emptyPlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error { return nil }
func (emptyPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, nil
}

// stubborn is an adapter that ignores SIGTERM once a channel is open and
// whose channels never finish closing.
type stubborn struct{ sdk.Adapter }

func (s stubborn) Configure(ctx context.Context, req sdk.ConfigureRequest) (sdk.Channel, error) {
	ch, err := s.Adapter.Configure(ctx, req)
	if err != nil {
		return nil, err
	}
	signal.Ignore(syscall.SIGTERM)
	return hangingClose{ch}, nil
}

type hangingClose struct{ sdk.Channel }

func (hangingClose) Close() error { select {} }

// childCmd returns a command that re-executes this test binary as mode.
func childCmd(t testing.TB, mode string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = []string{envChild + "=" + mode}
	return cmd
}

// recorder is a slog handler that keeps records, for asserting on logs.
type recorder struct {
	mu      sync.Mutex
	records []record
	attrs   []slog.Attr
	shared  *recorder
}

type record struct {
	level slog.Level
	msg   string
	attrs map[string]string
	time  time.Time
}

func newRecorder() *recorder { r := &recorder{}; r.shared = r; return r }

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	m := map[string]string{}
	for _, a := range r.attrs {
		m[a.Key] = a.Value.String()
	}
	rec.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.Resolve().String()
		return true
	})
	r.shared.mu.Lock()
	r.shared.records = append(r.shared.records, record{level: rec.Level, msg: rec.Message, attrs: m, time: rec.Time})
	r.shared.mu.Unlock()
	return nil
}

func (r *recorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &recorder{attrs: append(append([]slog.Attr(nil), r.attrs...), as...), shared: r.shared}
}

func (r *recorder) WithGroup(string) slog.Handler { return r }

// find returns the records for which match is true.
func (r *recorder) find(match func(record) bool) []record {
	r.shared.mu.Lock()
	defer r.shared.mu.Unlock()
	var out []record
	for _, rec := range r.shared.records {
		if match(rec) {
			out = append(out, rec)
		}
	}
	return out
}

// waitFor polls until at least n records match or the deadline passes.
func (r *recorder) waitFor(t *testing.T, n int, match func(record) bool) []record {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := r.find(match)
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustJSON(t testing.TB, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// launch starts the serving child and closes it when the test ends.
func launch(t testing.TB, mode string, logger *slog.Logger) *host.Client {
	t.Helper()
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(&testWriter{t: t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	c, err := host.Launch(context.Background(), host.Config{Cmd: childCmd(t, mode), Name: "mem", Logger: logger})
	if err != nil {
		t.Fatalf("launch: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

type testWriter struct{ t testing.TB }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

var syscallZero = syscall.Signal(0)

// orphanHost is a host that launches an adapter and dies without
// stopping it; it prints the adapter's pid.
func orphanHost() int {
	exe, err := os.Executable()
	if err != nil {
		return 1
	}
	cmd := exec.Command(exe)
	cmd.Env = []string{envChild + "=serve"}
	c, err := host.Launch(context.Background(), host.Config{Cmd: cmd, Name: "orphan", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(c.Pid())
	return 0 // exits without Close
}
