package channeltest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/host"
)

// EnvAdapterBin names an adapter executable; when set, Run without a
// Subprocess or Self option runs the cases against it, with the
// space-separated arguments in EnvAdapterArgs (e.g. REMORA_ADAPTER_BIN=remora
// REMORA_ADAPTER_ARGS="adapter dir" for a built-in adapter).
const (
	EnvAdapterBin  = "REMORA_ADAPTER_BIN"
	EnvAdapterArgs = "REMORA_ADAPTER_ARGS"
)

// envChild marks a test binary re-executed by Self as the adapter.
const envChild = "REMORA_CHANNELTEST_CHILD"

// launchTimeout bounds starting an adapter process.
const launchTimeout = 30 * time.Second

// Subprocess makes Run start the adapter executable at path (with args)
// through sdk/host, with the go-plugin handshake and AutoMTLS, a fresh
// process per case and after each restart, and run the cases against it.
func Subprocess(path string, args ...string) Option {
	return func(c *config) {
		c.command = func() *exec.Cmd {
			cmd := exec.Command(path, args...)
			return cmd
		}
	}
}

// Self makes Run use the test binary itself as the adapter executable:
// it re-executes os.Args[0], whose TestMain must call ServeIfChild first.
func Self() Option {
	return func(c *config) {
		c.command = func() *exec.Cmd {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), envChild+"=1")
			return cmd
		}
	}
}

// ServeIfChild serves a and exits when this process is a test binary that
// Self re-executed as the adapter; otherwise it returns at once. Call it
// first in TestMain:
//
//	func TestMain(m *testing.M) {
//		channeltest.ServeIfChild(dir.New())
//		os.Exit(m.Run())
//	}
func ServeIfChild(a sdk.Adapter) {
	if os.Getenv(envChild) != "1" {
		return
	}
	if err := sdk.Serve(a, sdk.WithArgs(nil)); err != nil {
		fmt.Fprintln(os.Stderr, "channeltest: serve:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// newBackend picks in-process or subprocess mode for one case.
func newBackend(t *testing.T, a sdk.Adapter, cfg config) backend {
	command := cfg.command
	if command == nil {
		if bin := os.Getenv(EnvAdapterBin); bin != "" {
			args := strings.Fields(os.Getenv(EnvAdapterArgs))
			command = func() *exec.Cmd { return exec.Command(bin, args...) }
		}
	}
	if command == nil {
		return inProcess{a}
	}
	w := &logWriter{t: t}
	t.Cleanup(w.close) // registered first, so it runs after the backend stops
	return &subprocess{name: a.Info().Name, command: command, log: slog.New(slog.NewTextHandler(w, nil))}
}

// subprocess runs the adapter as a child process through sdk/host.
type subprocess struct {
	name    string
	command func() *exec.Cmd
	log     *slog.Logger
	c       *host.Client
}

func (s *subprocess) adapter(t *testing.T) sdk.Adapter {
	t.Helper()
	if s.c != nil {
		return s.c
	}
	ctx, cancel := context.WithTimeout(context.Background(), launchTimeout)
	defer cancel()
	c, err := host.Launch(ctx, host.Config{Cmd: s.command(), Name: s.name, Logger: s.log})
	if err != nil {
		t.Fatalf("channeltest: start the adapter process: %v", err)
	}
	s.c = c
	return c
}

func (s *subprocess) stop(t *testing.T) {
	t.Helper()
	if s.c == nil {
		return
	}
	if err := s.c.Close(); err != nil {
		t.Errorf("channeltest: stop the adapter process: %v", err)
	}
	s.c = nil
}

// logWriter passes the adapter's log lines to t.Log until the case ends.
type logWriter struct {
	t      testing.TB
	mu     sync.Mutex
	closed bool
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (w *logWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
}
