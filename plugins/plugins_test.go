package plugins_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/remora-p2p/remora/plugins"
	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/host"
	"github.com/remora-p2p/remora/sdk/host/hosttest"
)

func newSupervisor(t *testing.T, opts plugins.Options) *plugins.Supervisor {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	if opts.MinBackoff == 0 {
		opts.MinBackoff = 50 * time.Millisecond
	}
	s := plugins.New(opts)
	t.Cleanup(func() { s.Close() })
	return s
}

func mustJSON(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func publish(ctx context.Context, ch sdk.Channel, data ...string) (sdk.PublishResponse, error) {
	var req sdk.PublishRequest
	for _, d := range data {
		req.Items = append(req.Items, sdk.PublishItem{Data: []byte(d)})
	}
	return ch.Publish(ctx, req)
}

func TestBuiltin(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := plugins.Builtin("dir")
	if cmd.Err != nil || cmd.Path != exe || !slices.Equal(cmd.Args, []string{exe, "adapter", "dir"}) {
		t.Fatalf("Builtin(dir) = %q %q (err %v), want %s adapter dir", cmd.Path, cmd.Args, cmd.Err, exe)
	}
}

// TestUnknownAdapter: a name neither built in nor installed is an error
// listing what is available; nothing is looked up in PATH.
func TestUnknownAdapter(t *testing.T) {
	s := newSupervisor(t, plugins.Options{Builtins: []string{"mem", "spy"}, Dir: t.TempDir()})
	for _, name := range []string{"nope", "sh", "true"} {
		_, err := s.Open(context.Background(), name, sdk.ConfigureRequest{ChannelID: "c"})
		if !errors.Is(err, plugins.ErrUnknownAdapter) {
			t.Fatalf("open %s: %v, want ErrUnknownAdapter", name, err)
		}
		if !strings.Contains(err.Error(), `"`+name+`"`) || !strings.Contains(err.Error(), "available: mem, spy") {
			t.Fatalf("error %q does not name %s and list the available adapters", err, name)
		}
	}
}

// TestSecretsAndProcesses: one process per adapter kind hosts all its
// channels; each process sees only its own channels' secrets and none of
// the host's environment.
func TestSecretsAndProcesses(t *testing.T) {
	s := newSupervisor(t, plugins.Options{Builtins: []string{"mem", "spy"}})
	ctx := context.Background()
	open := func(kind, id string, secrets map[string]string) *plugins.Channel {
		ch, err := s.Open(ctx, kind, sdk.ConfigureRequest{ChannelID: id, Secrets: secrets})
		if err != nil {
			t.Fatalf("open %s/%s: %v", kind, id, err)
		}
		return ch
	}
	a := open("spy", "a", map[string]string{"token": "A"})
	open("mem", "b", map[string]string{"password": "B"})
	open("spy", "c", map[string]string{"key": "C"})
	h := a.Health(ctx)
	if want := "secrets=key=C,token=A env="; h.Message != want {
		t.Fatalf("spy saw %q, want %q", h.Message, want)
	}
	hs := s.Health(ctx)
	if len(hs) != 2 || hs[0].Name != "mem" || hs[1].Name != "spy" {
		t.Fatalf("health %+v: want mem and spy", hs)
	}
	if !hs[0].Running || !hs[1].Running || hs[0].Pid == 0 || hs[0].Pid == hs[1].Pid {
		t.Fatalf("health %+v: want two running processes", hs)
	}
	if len(hs[1].Channels) != 2 || hs[1].Channels[0].ID != "a" || hs[1].Channels[1].ID != "c" || hs[1].Channels[0].State != sdk.HealthOK {
		t.Fatalf("spy channels %+v", hs[1].Channels)
	}
}

// TestTogether: built-ins named in Options.Together run in one process,
// each kind with its own channels and secrets; when the process dies the
// channels of every kind in it are configured again on the new one.
func TestTogether(t *testing.T) {
	s := newSupervisor(t, plugins.Options{Builtins: []string{"mem", "spy"}, Together: []string{"mem", "spy"}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spyCh, err := s.Open(ctx, "spy", sdk.ConfigureRequest{ChannelID: "a", Secrets: map[string]string{"token": "A"}})
	if err != nil {
		t.Fatal(err)
	}
	memCh, err := s.Open(ctx, "mem", sdk.ConfigureRequest{ChannelID: "b", StateDir: t.TempDir(),
		Secrets: map[string]string{"password": "B"}, Config: mustJSON(t, hosttest.Config{CrashOn: "die"})})
	if err != nil {
		t.Fatal(err)
	}
	if h := spyCh.Health(ctx); h.Message != "secrets=token=A env=" {
		t.Fatalf("spy saw %q, want only its own secret", h.Message)
	}
	hs := s.Health(ctx)
	if len(hs) != 1 || hs[0].Name != "mem+spy" || !slices.Equal(hs[0].Kinds, []string{"mem", "spy"}) || !hs[0].Running || len(hs[0].Channels) != 2 {
		t.Fatalf("health %+v: want one process mem+spy with both channels", hs)
	}
	pid := hs[0].Pid
	for _, ch := range []*plugins.Channel{spyCh, memCh} {
		if r, err := publish(ctx, ch, "x"); err != nil || r.Results[0].Err != nil {
			t.Fatalf("publish on %s: %v %+v", ch.ID(), err, r)
		}
	}

	if _, err := publish(ctx, memCh, "die"); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("publish that kills the process: %v, want ErrUnavailable", err)
	}
	for _, ch := range []*plugins.Channel{spyCh, memCh} {
		for {
			_, err := publish(ctx, ch, "y")
			if err == nil {
				break
			}
			if !errors.Is(err, sdk.ErrUnavailable) {
				t.Fatalf("publish on %s after the restart: %v", ch.ID(), err)
			}
			select {
			case <-ctx.Done():
				t.Fatalf("channel %s not back: %v", ch.ID(), err)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	if h := s.Health(ctx)[0]; h.Pid == pid || h.Restarts != 1 {
		t.Fatalf("health after the crash %+v: want a new process, one restart", h)
	}
}

// TestCrashRestart: an adapter that dies is restarted; the channel handed
// out stays valid; calls during the restart fail with ErrUnavailable; the
// cut Subscribe returns ErrUnavailable and resumes from its cursor with
// nothing lost.
func TestCrashRestart(t *testing.T) {
	s := newSupervisor(t, plugins.Options{Builtins: []string{"mem"}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ch, err := s.Open(ctx, "mem", sdk.ConfigureRequest{ChannelID: "c", StateDir: t.TempDir(),
		Config: mustJSON(t, hosttest.Config{CrashOn: "die"})})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := publish(ctx, ch, "a", "b"); err != nil {
		t.Fatal(err)
	}
	got := make(chan sdk.Delivery, 10)
	subErr := make(chan error, 1)
	go func() {
		subErr <- ch.Subscribe(ctx, sdk.SubscribeRequest{}, sdk.SinkFunc(func(_ context.Context, d sdk.Delivery) error {
			got <- d
			return nil
		}))
	}()
	var cursor []byte
	for range 2 {
		cursor = (<-got).Cursor
	}
	pid := s.Health(ctx)[0].Pid

	if _, err := publish(ctx, ch, "die"); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("publish that kills the adapter: %v, want ErrUnavailable", err)
	}
	if err := <-subErr; !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("subscribe cut by the crash: %v, want ErrUnavailable", err)
	}
	if _, err := publish(ctx, ch, "during"); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("publish during the restart: %v, want ErrUnavailable", err)
	}

	// The same channel works again once the process is back.
	for {
		_, err := publish(ctx, ch, "c")
		if err == nil {
			break
		}
		if !errors.Is(err, sdk.ErrUnavailable) {
			t.Fatalf("publish after restart: %v", err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("adapter not back: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	h := s.Health(ctx)[0]
	if !h.Running || h.Restarts != 1 || h.Pid == pid || h.Pid == 0 ||
		h.LastError == nil || !strings.Contains(h.LastError.Error(), "exited unexpectedly") {
		t.Fatalf("health after restart %+v: want running, 1 restart, a new pid, why it restarted", h)
	}
	if h.Channels[0].State != sdk.HealthOK {
		t.Fatalf("channel health after restart %+v", h.Channels[0])
	}

	// Resume from the cursor: the next item is the one published after the
	// restart; from the start, everything survived.
	stop := errors.New("enough")
	var resumed []string
	err = ch.Subscribe(ctx, sdk.SubscribeRequest{Cursor: cursor}, sdk.SinkFunc(func(_ context.Context, d sdk.Delivery) error {
		resumed = append(resumed, string(d.Data))
		return stop
	}))
	if !errors.Is(err, stop) || !slices.Equal(resumed, []string{"c"}) {
		t.Fatalf("resumed subscription got %q (%v), want [c]", resumed, err)
	}
	var all []string
	err = ch.Subscribe(ctx, sdk.SubscribeRequest{}, sdk.SinkFunc(func(_ context.Context, d sdk.Delivery) error {
		all = append(all, string(d.Data))
		if len(all) == 3 {
			return stop
		}
		return nil
	}))
	if !errors.Is(err, stop) || !slices.Equal(all, []string{"a", "b", "c"}) {
		t.Fatalf("full subscription got %q (%v), want [a b c]", all, err)
	}
}

// TestConfigErrorsNotRestarted: Configure's configuration errors reach the
// caller and are never retried, at Open and after a restart.
func TestConfigErrorsNotRestarted(t *testing.T) {
	s := newSupervisor(t, plugins.Options{Builtins: []string{"mem"}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, code := range []sdk.Code{sdk.CodeBadConfig, sdk.CodeAuthFailed, sdk.CodeNeedsUserAction} {
		_, err := s.Open(ctx, "mem", sdk.ConfigureRequest{ChannelID: "bad-" + code.String(),
			Config: mustJSON(t, hosttest.Config{FailConfigure: true, FailCode: code, FailMessage: "fix field x"})})
		if sdk.CodeOf(err) != code || !strings.Contains(err.Error(), "fix field x") {
			t.Fatalf("open: %v, want %v with the adapter's message", err, code)
		}
	}
	if h := s.Health(ctx)[0]; !h.Running || h.Restarts != 0 {
		t.Fatalf("health %+v: a configuration error must not restart the adapter", h)
	}

	// After a crash the channel is reopened; now its credentials fail.
	ch, err := s.Open(ctx, "mem", sdk.ConfigureRequest{ChannelID: "reopen", StateDir: t.TempDir(),
		Config: mustJSON(t, hosttest.Config{FailReopen: true, FailCode: sdk.CodeAuthFailed, FailMessage: "token revoked", CrashOn: "die"})})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := publish(ctx, ch, "x"); err != nil {
		t.Fatal(err)
	}
	publish(ctx, ch, "die")
	for {
		_, err := publish(ctx, ch, "y")
		if errors.Is(err, sdk.ErrAuthFailed) {
			break
		}
		if !errors.Is(err, sdk.ErrUnavailable) {
			t.Fatalf("publish after restart: %v, want ErrUnavailable then ErrAuthFailed", err)
		}
		select {
		case <-ctx.Done():
			t.Fatal("reopen error never reported")
		case <-time.After(50 * time.Millisecond):
		}
	}
	time.Sleep(300 * time.Millisecond) // a wrongly retrying supervisor would act now
	h := s.Health(ctx)[0]
	if h.Restarts != 1 || !h.Running {
		t.Fatalf("health %+v: want exactly one restart", h)
	}
	var ch0 plugins.ChannelHealth
	for _, c := range h.Channels {
		if c.ID == "reopen" {
			ch0 = c
		}
	}
	if ch0.State != sdk.HealthDown || !strings.Contains(ch0.Message, "token revoked") {
		t.Fatalf("channel health %+v: want down with the adapter's message", ch0)
	}
}

// TestStartFailures: children that never complete the handshake make Open
// fail promptly with a clear error, reported in Health.
func TestStartFailures(t *testing.T) {
	// The wrong handshakes fail as soon as the child prints its line, so
	// their start timeout is generous: on a loaded machine the child may
	// take seconds to print it. Only the child that never answers needs a
	// short one.
	tests := []struct {
		name    string
		timeout time.Duration
		want    string
	}{
		{"slow", 700 * time.Millisecond, "timeout while waiting for plugin to start"},
		{"wrong-cookie", 30 * time.Second, "adapter wrong-cookie: exited before printing its handshake line"},
		{"wrong-version", 30 * time.Second, "adapter wrong-version: speaks another adapter protocol than this remora (1)"},
		{"garbage", 30 * time.Second, `adapter garbage: printed "hello from an adapter that never read the docs" where its handshake line belongs`},
		{"crash", 30 * time.Second, "adapter crash: exited before printing its handshake line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSupervisor(t, plugins.Options{Builtins: []string{tt.name}, StartTimeout: tt.timeout, MinBackoff: time.Hour})
			start := time.Now()
			_, err := s.Open(context.Background(), tt.name, sdk.ConfigureRequest{ChannelID: "c"})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("open: %v, want an error containing %q", err, tt.want)
			}
			if d := time.Since(start); d > tt.timeout+15*time.Second {
				t.Fatalf("open took %v", d)
			}
			if tt.name == "crash" && !strings.Contains(err.Error(), "panic: cannot read my config") {
				t.Errorf("open: %v, want the adapter's last stderr line", err)
			}
			t.Logf("%s: %v", tt.name, err)
			h := s.Health(context.Background())
			if len(h) != 1 || h[0].Running || h[0].LastError == nil || !strings.Contains(h[0].LastError.Error(), tt.want) {
				t.Fatalf("health %+v: want not running with the start error", h)
			}
			// While waiting to retry, Open says when.
			_, err = s.Open(context.Background(), tt.name, sdk.ConfigureRequest{ChannelID: "c"})
			if !errors.Is(err, sdk.ErrUnavailable) || sdk.RetryAfterOf(err) <= 0 {
				t.Fatalf("open during backoff: %v, want ErrUnavailable with a retry-after", err)
			}
		})
	}
}

// TestUnknownCode: an adapter answering with a code this host does not know
// gets an error that names it and the code, is not retried as an outage, and
// shows in Health.
func TestUnknownCode(t *testing.T) {
	s := newSupervisor(t, plugins.Options{Builtins: []string{"oddcode"}})
	_, err := s.Open(context.Background(), "oddcode", sdk.ConfigureRequest{ChannelID: "c"})
	for _, want := range []string{"adapter oddcode answered with error code 42", "the moon is in the wrong phase"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("open: %v, want an error containing %q", err, want)
		}
	}
	if code := sdk.CodeOf(err); code != sdk.CodeUnknown {
		t.Errorf("code %v, want unknown", code)
	}
}

// wrapperScript writes an executable that runs this test binary as
// adapter kind: a stand-in for a third-party adapter binary.
func wrapperScript(t *testing.T, kind string) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "my-adapter")
	script := "#!/bin/sh\nexec '" + exe + "' adapter " + kind + " \"$@\"\n"
	if err := os.WriteFile(path, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestInstall(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "plugins")
	s := newSupervisor(t, plugins.Options{Dir: dir, Builtins: []string{"mem"}})
	ctx := context.Background()
	src := wrapperScript(t, "spy")
	in, err := s.Install(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(src)
	sum := sha256.Sum256(b)
	if in.Name != "spy" || in.Version != "test" || in.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("installed %+v, want spy pinned at %x", in, sum)
	}
	fi, err := os.Stat(filepath.Join(dir, in.File))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("installed file: %v, mode %v; want 0755", err, fi.Mode())
	}
	list, err := s.Installed()
	if err != nil || len(list) != 1 || list[0] != in {
		t.Fatalf("Installed() = %+v, %v", list, err)
	}
	if got := s.Adapters(); !slices.Equal(got, []string{"mem", "spy"}) {
		t.Fatalf("Adapters() = %v", got)
	}
	ch, err := s.Open(ctx, "spy", sdk.ConfigureRequest{ChannelID: "c"})
	if err != nil {
		t.Fatalf("open installed adapter: %v", err)
	}
	if _, err := publish(ctx, ch, "hello"); err != nil {
		t.Fatal(err)
	}

	t.Run("refused", func(t *testing.T) {
		notAdapter := filepath.Join(t.TempDir(), "tool")
		os.WriteFile(notAdapter, []byte("#!/bin/sh\necho hello\n"), 0o700)
		tests := []struct{ path, want string }{
			{wrapperScript(t, "mem"), "name of a built-in adapter"},
			{notAdapter, "is it a remora adapter"},
			{filepath.Join(t.TempDir(), "missing"), "no such file"},
		}
		for _, tt := range tests {
			if _, err := s.Install(ctx, tt.path); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("install %s: %v, want an error containing %q", tt.path, err, tt.want)
			}
		}
	})

	t.Run("tampered", func(t *testing.T) {
		f, err := os.OpenFile(filepath.Join(dir, in.File), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString("# changed\n")
		f.Close()
		s2 := newSupervisor(t, plugins.Options{Dir: dir, MinBackoff: 10 * time.Millisecond})
		_, err = s2.Open(ctx, "spy", sdk.ConfigureRequest{ChannelID: "c"})
		if !errors.Is(err, host.ErrChecksum) || !strings.Contains(err.Error(), "modified after it was installed") {
			t.Fatalf("open tampered adapter: %v, want ErrChecksum", err)
		}
		time.Sleep(100 * time.Millisecond)
		h := s2.Health(ctx)
		if len(h) != 1 || h[0].Failed == nil || h[0].Restarts != 0 {
			t.Fatalf("health %+v: want failed, never restarted", h)
		}
	})
}

func TestClose(t *testing.T) {
	s := newSupervisor(t, plugins.Options{Builtins: []string{"mem"}})
	ctx := context.Background()
	ch, err := s.Open(ctx, "mem", sdk.ConfigureRequest{ChannelID: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(ctx, "mem", sdk.ConfigureRequest{ChannelID: "c"}); err == nil {
		t.Fatal("opened the same channel ID twice")
	}
	subErr := make(chan error, 1)
	go func() {
		subErr <- ch.Subscribe(ctx, sdk.SubscribeRequest{}, sdk.SinkFunc(func(context.Context, sdk.Delivery) error { return nil }))
	}()
	time.Sleep(200 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-subErr:
		if err == nil {
			t.Fatal("subscribe ended without an error when the supervisor closed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("subscribe still running after Close")
	}
	if _, err := publish(ctx, ch, "x"); !errors.Is(err, plugins.ErrClosed) {
		t.Fatalf("publish after close: %v, want ErrClosed", err)
	}
	if _, err := s.Open(ctx, "mem", sdk.ConfigureRequest{ChannelID: "d"}); !errors.Is(err, plugins.ErrClosed) {
		t.Fatalf("open after close: %v, want ErrClosed", err)
	}
}

// countHandler counts records by message and remembers one attribute.
type countHandler struct {
	mu      sync.Mutex
	n       map[string]int
	adapter map[string]string
	attrs   []slog.Attr
	shared  *countHandler
}

func newCountHandler() *countHandler {
	h := &countHandler{n: map[string]int{}, adapter: map[string]string{}}
	h.shared = h
	return h
}

func (h *countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countHandler) Handle(_ context.Context, r slog.Record) error {
	h.shared.mu.Lock()
	defer h.shared.mu.Unlock()
	h.shared.n[r.Message]++
	for _, a := range h.attrs {
		if a.Key == "adapter" {
			h.shared.adapter[r.Message] = a.Value.String()
		}
	}
	return nil
}
func (h *countHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &countHandler{attrs: append(append([]slog.Attr(nil), h.attrs...), as...), shared: h.shared}
}
func (h *countHandler) WithGroup(string) slog.Handler { return h }

func (h *countHandler) count(msg string) (int, string) {
	h.shared.mu.Lock()
	defer h.shared.mu.Unlock()
	return h.shared.n[msg], h.shared.adapter[msg]
}

// TestStderrFlood: an adapter that floods stderr while starting still
// serves, and every line reaches the host's log with adapter=NAME.
func TestStderrFlood(t *testing.T) {
	h := newCountHandler()
	s := newSupervisor(t, plugins.Options{Builtins: []string{"flood"}, Logger: slog.New(h)})
	ctx := context.Background()
	ch, err := s.Open(ctx, "flood", sdk.ConfigureRequest{ChannelID: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := publish(ctx, ch, "x"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		n, adapter := h.count("flood")
		if n == floodLines && adapter == "flood" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("host logged %d of %d flood lines (adapter=%q)", n, floodLines, adapter)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCloseStubborn: Close ends an adapter that ignores SIGTERM and hangs
// closing its channels, after the grace period.
func TestCloseStubborn(t *testing.T) {
	s := plugins.New(plugins.Options{Builtins: []string{"stubborn"}, Logger: quietLogger(), StopTimeout: 300 * time.Millisecond})
	ctx := context.Background()
	if _, err := s.Open(ctx, "stubborn", sdk.ConfigureRequest{ChannelID: "c"}); err != nil {
		t.Fatal(err)
	}
	pid := s.Health(ctx)[0].Pid
	start := time.Now()
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Close hangs on an adapter that ignores SIGTERM")
	}
	t.Logf("closed in %v", time.Since(start))
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("adapter %d still exists after Close", pid)
	}
}
