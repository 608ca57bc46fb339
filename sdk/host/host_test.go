package host_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/host"
	"github.com/remora-p2p/remora/sdk/host/hosttest"
)

// transports are the two ways a host reaches an adapter: a go-plugin
// subprocess and plain gRPC inside this process.
var transports = []struct {
	name string
	open func(t *testing.T) *host.Client
}{
	{"subprocess", func(t *testing.T) *host.Client { return launch(t, "serve", nil) }},
	{"inprocess", func(t *testing.T) *host.Client {
		c, err := host.ServeInProcess(hosttest.New(), slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}},
}

var sentinels = map[sdk.Code]error{
	sdk.CodeUnsupported:     sdk.ErrUnsupported,
	sdk.CodeAuthFailed:      sdk.ErrAuthFailed,
	sdk.CodeNeedsUserAction: sdk.ErrNeedsUserAction,
	sdk.CodeNotFound:        sdk.ErrNotFound,
	sdk.CodeRateLimited:     sdk.ErrRateLimited,
	sdk.CodeTooLarge:        sdk.ErrTooLarge,
	sdk.CodeCursorInvalid:   sdk.ErrCursorInvalid,
	sdk.CodeUnavailable:     sdk.ErrUnavailable,
	sdk.CodeBadConfig:       sdk.ErrBadConfig,
	sdk.CodeInvalidArgument: sdk.ErrInvalidArgument,
}

// checkError asserts err is an *sdk.Error with exactly this code, message
// and retry-after, reachable with errors.Is and errors.As.
func checkError(t *testing.T, err error, code sdk.Code, msg string, retry time.Duration) {
	t.Helper()
	var e *sdk.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *sdk.Error", err, err)
	}
	if e.Code != code || e.Message != msg || e.RetryAfter != retry {
		t.Fatalf("got {%v %q %v}, want {%v %q %v}", e.Code, e.Message, e.RetryAfter, code, msg, retry)
	}
	if s, ok := sentinels[code]; ok && !errors.Is(err, s) {
		t.Fatalf("errors.Is(%v, %v) is false", err, s)
	}
	for c, s := range sentinels {
		if c != code && errors.Is(err, s) {
			t.Fatalf("errors.Is(%v, %v) is true for code %v", err, s, code)
		}
	}
	if sdk.CodeOf(err) != code {
		t.Fatalf("CodeOf = %v, want %v", sdk.CodeOf(err), code)
	}
}

// TestErrorsCrossTheBoundary checks every Code, as a call error, a
// per-item error and a Configure error, over both transports.
func TestErrorsCrossTheBoundary(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			c := tr.open(t)
			ctx := context.Background()
			for code := sdk.CodeUnknown; code <= sdk.MaxCode; code++ {
				t.Run(code.String(), func(t *testing.T) {
					msg := "the " + code.String() + " message: do X"
					retry := 1500 * time.Millisecond
					cfg := hosttest.Config{Fail: true, FailCode: code, FailMessage: msg, RetryAfter: sdk.Duration(retry)}

					ch, err := c.Configure(ctx, sdk.ConfigureRequest{ChannelID: "call-" + code.String(), Config: mustJSON(t, cfg)})
					if err != nil {
						t.Fatalf("configure: %v", err)
					}
					defer ch.Close()
					_, err = ch.Publish(ctx, sdk.PublishRequest{Items: []sdk.PublishItem{{Data: []byte("x")}}})
					checkError(t, err, code, msg, retry)
					err = ch.Subscribe(ctx, sdk.SubscribeRequest{}, sdk.SinkFunc(func(context.Context, sdk.Delivery) error { return nil }))
					checkError(t, err, code, msg, retry)
					err = ch.(sdk.Board).Put(ctx, sdk.PutRequest{Key: "k"})
					checkError(t, err, code, msg, retry)

					cfg.Fail, cfg.FailConfigure = false, true
					_, err = c.Configure(ctx, sdk.ConfigureRequest{ChannelID: "conf-" + code.String(), Config: mustJSON(t, cfg)})
					checkError(t, err, code, msg, retry)

					ich, err := c.Configure(ctx, sdk.ConfigureRequest{ChannelID: "item-" + code.String(),
						Config: mustJSON(t, hosttest.Config{ItemFail: true, FailCode: code})})
					if err != nil {
						t.Fatalf("configure: %v", err)
					}
					defer ich.Close()
					resp, err := ich.Publish(ctx, sdk.PublishRequest{Items: []sdk.PublishItem{
						{Data: []byte("ok1")}, {Data: []byte("fail")}, {Data: []byte("ok2")},
					}})
					if err != nil {
						t.Fatalf("publish: %v", err)
					}
					if len(resp.Results) != 3 || resp.Results[0].Err != nil || resp.Results[2].Err != nil ||
						resp.Results[0].ID == "" || resp.Results[2].ID == "" {
						t.Fatalf("results %+v: want items 0 and 2 to succeed", resp.Results)
					}
					checkError(t, resp.Results[1].Err, code, "mem: item 1 refused", 0)
				})
			}
		})
	}
}

// TestUnknownCode: a code this host does not know arrives as CodeUnknown
// with the number and the adapter named, and the client counts it for
// `remora doctor`.
func TestUnknownCode(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			c := tr.open(t)
			ctx := context.Background()
			cfg := hosttest.Config{Fail: true, FailCode: 42, FailMessage: "from the future"}
			ch, err := c.Configure(ctx, sdk.ConfigureRequest{ChannelID: "u", Config: mustJSON(t, cfg)})
			if err != nil {
				t.Fatal(err)
			}
			defer ch.Close()
			_, err = ch.Publish(ctx, sdk.PublishRequest{Items: []sdk.PublishItem{{Data: []byte("x")}}})
			if sdk.CodeOf(err) != sdk.CodeUnknown || !strings.Contains(err.Error(), "adapter mem answered with error code 42") ||
				!strings.Contains(err.Error(), "from the future") {
				t.Fatalf("got %v, want CodeUnknown naming the adapter and code 42", err)
			}
			if code, n := c.UnknownCode(); code != 42 || n != 1 {
				t.Fatalf("UnknownCode = %d, %d; want 42, 1", code, n)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			c := tr.open(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if got := c.Info(); got.Name != hosttest.Name || got.Defaults != hosttest.Caps {
				t.Fatalf("info %+v, want name %q and defaults %+v", got, hosttest.Name, hosttest.Caps)
			}
			ch, err := c.Configure(ctx, sdk.ConfigureRequest{ChannelID: "rt", StateDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			defer ch.Close()
			if ch.Capabilities() != hosttest.Caps {
				t.Fatalf("capabilities %+v, want %+v", ch.Capabilities(), hosttest.Caps)
			}
			items := []sdk.PublishItem{
				{Data: []byte("one"), IdempotencyKey: "k1"},
				{Data: bytes.Repeat([]byte{0, 0xff}, 600), IdempotencyKey: "k2", To: []string{"@a", "@b"}},
				{Data: []byte("one again"), IdempotencyKey: "k1"},
			}
			resp, err := ch.Publish(ctx, sdk.PublishRequest{Items: items})
			if err != nil {
				t.Fatal(err)
			}
			if resp.Results[2].ID != resp.Results[0].ID {
				t.Fatalf("repeated idempotency key got a new ID: %+v", resp.Results)
			}

			// Subscribe from the start, then resume after the first cursor.
			var got []sdk.Delivery
			sctx, scancel := context.WithCancel(ctx)
			err = ch.Subscribe(sctx, sdk.SubscribeRequest{}, sdk.SinkFunc(func(_ context.Context, d sdk.Delivery) error {
				got = append(got, d)
				if len(got) == 2 {
					scancel()
				}
				return nil
			}))
			scancel()
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("subscribe ended with %v, want context.Canceled", err)
			}
			if len(got) != 2 || string(got[0].Data) != "one" || !bytes.Equal(got[1].Data, items[1].Data) ||
				got[0].ID != resp.Results[0].ID || got[1].From != "mem" || got[1].Time.IsZero() {
				t.Fatalf("deliveries %+v", got)
			}
			stop := errors.New("stop")
			err = ch.Subscribe(ctx, sdk.SubscribeRequest{Cursor: got[0].Cursor}, sdk.SinkFunc(func(_ context.Context, d sdk.Delivery) error {
				if d.ID != got[1].ID {
					t.Errorf("resumed at %s, want %s", d.ID, got[1].ID)
				}
				return stop
			}))
			if !errors.Is(err, stop) {
				t.Fatalf("subscribe returned %v, want the sink's error", err)
			}
			err = ch.Subscribe(ctx, sdk.SubscribeRequest{Cursor: []byte("bogus")}, sdk.SinkFunc(func(context.Context, sdk.Delivery) error { return nil }))
			if !errors.Is(err, sdk.ErrCursorInvalid) {
				t.Fatalf("bad cursor: %v, want ErrCursorInvalid", err)
			}

			b := ch.(sdk.Board)
			if err := b.Put(ctx, sdk.PutRequest{Key: "presence", Value: []byte("here")}); err != nil {
				t.Fatal(err)
			}
			gr, err := b.Get(ctx, sdk.GetRequest{Keys: []string{"presence", "absent"}})
			if err != nil {
				t.Fatal(err)
			}
			if len(gr.Entries) != 1 || gr.Entries[0].Key != "presence" || string(gr.Entries[0].Value) != "here" || gr.Entries[0].Time.IsZero() {
				t.Fatalf("board get %+v", gr)
			}
			dr, err := ch.(sdk.Deleter).Delete(ctx, sdk.DeleteRequest{IDs: []string{resp.Results[0].ID, "no such id!"}})
			if err != nil {
				t.Fatal(err)
			}
			if len(dr.Errors) != 2 || dr.Errors[0] != nil || !errors.Is(dr.Errors[1], sdk.ErrNotFound) {
				t.Fatalf("delete results %v", dr.Errors)
			}
			h := ch.(sdk.Healther).Health(ctx)
			if h.State != sdk.HealthOK || h.Counters["items"] != 2 {
				t.Fatalf("health %+v", h)
			}
			if err := ch.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := ch.Publish(ctx, sdk.PublishRequest{}); !errors.Is(err, host.ErrClosed) {
				t.Fatalf("publish after close: %v, want ErrClosed", err)
			}
		})
	}
}

// TestOptionalInterfaces: a channel without Board, Deleter or Healther
// answers ErrUnsupported (and an OK health with a note).
func TestOptionalInterfaces(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			c := tr.open(t)
			ctx := context.Background()
			ch, err := c.Configure(ctx, sdk.ConfigureRequest{ChannelID: "plain", Config: mustJSON(t, hosttest.Config{Plain: true})})
			if err != nil {
				t.Fatal(err)
			}
			defer ch.Close()
			if err := ch.(sdk.Board).Put(ctx, sdk.PutRequest{Key: "k"}); !errors.Is(err, sdk.ErrUnsupported) {
				t.Errorf("put: %v", err)
			}
			if _, err := ch.(sdk.Board).Get(ctx, sdk.GetRequest{}); !errors.Is(err, sdk.ErrUnsupported) {
				t.Errorf("get: %v", err)
			}
			if _, err := ch.(sdk.Deleter).Delete(ctx, sdk.DeleteRequest{IDs: []string{"1"}}); !errors.Is(err, sdk.ErrUnsupported) {
				t.Errorf("delete: %v", err)
			}
			if h := ch.(sdk.Healther).Health(ctx); h.State != sdk.HealthOK || !strings.Contains(h.Message, "no channel health") {
				t.Errorf("health: %+v", h)
			}
		})
	}
}

// TestCancel: a blocked Subscribe returns ctx.Err() promptly.
func TestCancel(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			c := tr.open(t)
			ch, err := c.Configure(context.Background(), sdk.ConfigureRequest{ChannelID: "c"})
			if err != nil {
				t.Fatal(err)
			}
			defer ch.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			err = ch.Subscribe(ctx, sdk.SubscribeRequest{}, sdk.SinkFunc(func(context.Context, sdk.Delivery) error { return nil }))
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("subscribe: %v, want DeadlineExceeded", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("subscribe took %v to notice its deadline", d)
			}
		})
	}
}

// TestLogsReemitted: the adapter's slog lines arrive in the host's slog
// with adapter=NAME, channel=ID, their level, message and attributes.
func TestLogsReemitted(t *testing.T) {
	rec := newRecorder()
	c := launch(t, "serve", slog.New(rec))
	ch, err := c.Configure(context.Background(), sdk.ConfigureRequest{ChannelID: "logged", Config: mustJSON(t, hosttest.Config{Log: true})})
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	before := time.Now().Add(-time.Second)
	if _, err := ch.Publish(context.Background(), sdk.PublishRequest{Items: []sdk.PublishItem{{Data: []byte("12345")}}}); err != nil {
		t.Fatal(err)
	}
	got := rec.waitFor(t, 1, func(r record) bool { return r.msg == "published" })
	if len(got) != 1 {
		t.Fatalf("got %d 'published' records, want 1", len(got))
	}
	r := got[0]
	want := map[string]string{"adapter": "mem", "channel": "logged", "bytes": "5", "id": "1"}
	for k, v := range want {
		if r.attrs[k] != v {
			t.Errorf("attr %s = %q, want %q (all: %v)", k, r.attrs[k], v, r.attrs)
		}
	}
	if r.level != slog.LevelInfo {
		t.Errorf("level %v, want INFO", r.level)
	}
	if r.time.Before(before) || r.time.After(time.Now()) {
		t.Errorf("record time %v is not the adapter's", r.time)
	}
}

func TestLaunchBadChildren(t *testing.T) {
	tests := []struct {
		mode    string
		timeout time.Duration
		want    []string // substrings of the error
	}{
		{"wrong-cookie", 0, []string{"This binary is a plugin"}},
		{"wrong-version", 0, []string{"ncompatible API version", "Plugin version: 2"}},
		{"slow-start", 700 * time.Millisecond, []string{"timeout while waiting for plugin to start"}},
		{"exit-early", 0, []string{"state directory is not writable"}},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			cmd := childCmd(t, tt.mode)
			start := time.Now()
			c, err := host.Launch(context.Background(), host.Config{Cmd: cmd, Name: "bad", StartTimeout: tt.timeout,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err == nil {
				c.Close()
				t.Fatal("launch succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if !strings.Contains(err.Error(), "launch adapter bad") {
				t.Errorf("error %q does not name the adapter", err)
			}
			if tt.timeout > 0 && time.Since(start) > tt.timeout+5*time.Second {
				t.Errorf("start timeout %v took %v", tt.timeout, time.Since(start))
			}
			if cmd.ProcessState == nil && cmd.Process != nil {
				// The child must be gone: signal 0 fails on a reaped process.
				if err := cmd.Process.Signal(syscallZero); err == nil {
					t.Errorf("child %d still running after a failed launch", cmd.Process.Pid)
				}
			}
		})
	}
}

// TestStderrFlood: thousands of stderr lines (JSON and raw) during start do
// not stall the host; every one is re-emitted.
func TestStderrFlood(t *testing.T) {
	rec := newRecorder()
	c := launch(t, "stderr-flood", slog.New(rec))
	ch, err := c.Configure(context.Background(), sdk.ConfigureRequest{ChannelID: "f"})
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if _, err := ch.Publish(context.Background(), sdk.PublishRequest{Items: []sdk.PublishItem{{Data: []byte("x")}}}); err != nil {
		t.Fatalf("publish after flood: %v", err)
	}
	jsonLines := rec.waitFor(t, floodLines, func(r record) bool { return r.msg == "flood" && r.attrs["adapter"] == "mem" })
	raw := rec.waitFor(t, floodLines, func(r record) bool {
		return strings.HasPrefix(r.msg, "raw line ") && r.level == slog.LevelDebug
	})
	if len(jsonLines) != floodLines || len(raw) != floodLines {
		t.Fatalf("re-emitted %d JSON and %d raw lines, want %d each", len(jsonLines), len(raw), floodLines)
	}
	if jsonLines[7].attrs["i"] != "7" || len(jsonLines[7].attrs["pad"]) != 200 {
		t.Fatalf("attributes lost: %v", jsonLines[7].attrs)
	}
}

// TestStopIgnoresSIGTERM: an adapter that ignores SIGTERM and hangs in
// Close is killed after the grace period.
func TestStopIgnoresSIGTERM(t *testing.T) {
	cmd := childCmd(t, "ignore-sigterm")
	c, err := host.Launch(context.Background(), host.Config{Cmd: cmd, Name: "stubborn", StopTimeout: 500 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Configure(context.Background(), sdk.ConfigureRequest{ChannelID: "s"}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.Close()
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("close took %v", d)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("adapter process still running after Close")
	}
	if cmd.ProcessState == nil || cmd.ProcessState.Success() {
		t.Fatalf("process state %v: want killed", cmd.ProcessState)
	}
}

// TestChecksum: a pinned binary starts; a tampered one is refused before
// it runs.
func TestChecksum(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	path := filepath.Join(t.TempDir(), "adapter")
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := childCmd(t, "serve")
	cmd.Path, cmd.Args = path, []string{path}
	c, err := host.Launch(context.Background(), host.Config{Cmd: cmd, Name: "pinned", Checksum: sum[:],
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("pinned binary: %v", err)
	}
	c.Close()

	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{0})
	f.Close()
	cmd = childCmd(t, "serve")
	cmd.Path, cmd.Args = path, []string{path}
	_, err = host.Launch(context.Background(), host.Config{Cmd: cmd, Name: "pinned", Checksum: sum[:]})
	if !errors.Is(err, host.ErrChecksum) {
		t.Fatalf("tampered binary: %v, want ErrChecksum", err)
	}
	if cmd.Process != nil {
		t.Fatal("tampered binary was started")
	}
}

// TestCrash: when the process dies, calls and a running Subscribe fail
// with ErrUnavailable and Done is closed.
func TestCrash(t *testing.T) {
	c := launch(t, "serve", slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	ch, err := c.Configure(ctx, sdk.ConfigureRequest{ChannelID: "x", Config: mustJSON(t, hosttest.Config{CrashOn: "die"})})
	if err != nil {
		t.Fatal(err)
	}
	subErr := make(chan error, 1)
	delivered := make(chan struct{}, 1)
	go func() {
		subErr <- ch.Subscribe(ctx, sdk.SubscribeRequest{}, sdk.SinkFunc(func(context.Context, sdk.Delivery) error {
			delivered <- struct{}{}
			return nil
		}))
	}()
	if _, err := ch.Publish(ctx, sdk.PublishRequest{Items: []sdk.PublishItem{{Data: []byte("live")}}}); err != nil {
		t.Fatal(err)
	}
	<-delivered
	_, err = ch.Publish(ctx, sdk.PublishRequest{Items: []sdk.PublishItem{{Data: []byte("die")}}})
	if !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("publish into a dying adapter: %v, want ErrUnavailable", err)
	}
	select {
	case err := <-subErr:
		if !errors.Is(err, sdk.ErrUnavailable) {
			t.Fatalf("subscribe: %v, want ErrUnavailable", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("subscribe did not end when the adapter died")
	}
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed after the crash")
	}
	if _, err := ch.Publish(ctx, sdk.PublishRequest{}); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("publish after crash: %v, want ErrUnavailable", err)
	}
	if err := ch.Close(); err != nil {
		t.Fatalf("close after crash: %v", err)
	}
}

// TestRunByHand: the adapter binary started without the host says what it
// is and exits non-zero; `describe` prints Info as JSON.
func TestRunByHand(t *testing.T) {
	cmd := childCmd(t, "serve")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err == nil || cmd.ProcessState.ExitCode() == 0 {
		t.Fatalf("run by hand: %v, want a non-zero exit", err)
	}
	for _, w := range []string{`remora adapter "mem"`, "not meant to be run by hand", "describe"} {
		if !strings.Contains(stderr.String(), w) {
			t.Errorf("stderr %q lacks %q", stderr.String(), w)
		}
	}
}

// alive reports whether pid runs (a zombie, dead but not yet reaped by
// whoever inherited it, counts as gone).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// TestLifeline: when the host dies without stopping its adapter, the
// adapter notices (EOF on its lifeline) and exits.
func TestLifeline(t *testing.T) {
	out, err := childCmd(t, "orphan-host").Output()
	if err != nil {
		t.Fatalf("orphan host: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("orphan host printed %q", out)
	}
	deadline := time.Now().Add(15 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("adapter %d still running 15s after its host died", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSIGTERM: SIGTERM makes the adapter close its channels and exit 0.
func TestSIGTERM(t *testing.T) {
	cmd := childCmd(t, "serve")
	c, err := host.Launch(context.Background(), host.Config{Cmd: cmd, Name: "mem", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Configure(context.Background(), sdk.ConfigureRequest{ChannelID: "x", StateDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("adapter still running 10s after SIGTERM")
	}
	if !cmd.ProcessState.Success() {
		t.Fatalf("adapter exited with %v, want status 0", cmd.ProcessState)
	}
}

// TestNoLeaks: a client, its channels and a cancelled subscription leave
// no goroutine behind once closed.
func TestNoLeaks(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			var c *host.Client
			t.Run("use", func(t *testing.T) {
				c = tr.open(t)
				ctx, cancel := context.WithCancel(context.Background())
				ch, err := c.Configure(ctx, sdk.ConfigureRequest{ChannelID: "l"})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := ch.Publish(ctx, sdk.PublishRequest{Items: []sdk.PublishItem{{Data: []byte("x")}}}); err != nil {
					t.Fatal(err)
				}
				done := make(chan error)
				go func() {
					done <- ch.Subscribe(ctx, sdk.SubscribeRequest{}, sdk.SinkFunc(func(context.Context, sdk.Delivery) error { return nil }))
				}()
				time.Sleep(50 * time.Millisecond)
				cancel()
				<-done
				ch.Close()
			}) // the subtest's cleanup closes the client
			select {
			case <-c.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("client not done after close")
			}
		})
	}
}
