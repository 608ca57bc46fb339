package sdk_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/host"
	"github.com/remora-p2p/remora/sdk/host/hosttest"
)

func TestDescribe(t *testing.T) {
	var out bytes.Buffer
	if err := sdk.Serve(hosttest.New(), sdk.WithArgs([]string{"describe"}), sdk.WithOutput(&out)); err != nil {
		t.Fatal(err)
	}
	var got struct {
		ProtocolVersion int `json:"protocol_version"`
		sdk.Info
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("describe output is not JSON: %v\n%s", err, out.String())
	}
	want := hosttest.New().Info()
	if got.ProtocolVersion != sdk.ProtocolVersion || got.Name != want.Name || got.Defaults != want.Defaults {
		t.Fatalf("describe = %+v, want protocol %d and %+v", got, sdk.ProtocolVersion, want)
	}
	if !strings.Contains(out.String(), "\n  \"name\": \"mem\"") {
		t.Fatalf("describe output is not indented JSON:\n%s", out.String())
	}
}

func TestServeRejectsArgs(t *testing.T) {
	err := sdk.Serve(hosttest.New(), sdk.WithArgs([]string{"serve", "--now"}))
	if err == nil || !strings.Contains(err.Error(), `"describe"`) {
		t.Fatalf("got %v, want an error naming the one accepted argument", err)
	}
}

// TestLogHandler: lines carry go-plugin's @message/@level/@timestamp keys,
// which the host parses, and the attributes as they are.
func TestLogHandler(t *testing.T) {
	tests := []struct {
		level slog.Level
		want  string
	}{
		{slog.LevelDebug - 4, "trace"},
		{slog.LevelDebug, "debug"},
		{slog.LevelInfo, "info"},
		{slog.LevelWarn, "warn"},
		{slog.LevelError, "error"},
		{slog.LevelError + 4, "error"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			var buf bytes.Buffer
			l := slog.New(sdk.NewLogHandler(&buf, slog.LevelDebug-8)).With("channel", "c1")
			l.Log(context.Background(), tt.level, "hello", "n", 3, slog.Group("g", "k", "v"))
			var m map[string]any
			if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
				t.Fatalf("%v: %s", err, buf.String())
			}
			if m["@message"] != "hello" || m["@level"] != tt.want || m["channel"] != "c1" || m["n"] != 3.0 {
				t.Fatalf("line %s", buf.String())
			}
			if g, _ := m["g"].(map[string]any); g["k"] != "v" {
				t.Fatalf("group lost: %s", buf.String())
			}
			ts, _ := m["@timestamp"].(string)
			if _, err := time.Parse("2006-01-02T15:04:05.000000Z07:00", ts); err != nil {
				t.Fatalf("@timestamp %q: %v", ts, err)
			}
		})
	}
}

// closeRecorder counts channel closes.
type closeRecorder struct {
	sdk.Adapter
	closed chan string
}

func (a closeRecorder) Configure(ctx context.Context, req sdk.ConfigureRequest) (sdk.Channel, error) {
	ch, err := a.Adapter.Configure(ctx, req)
	return closeNotify{ch, req.ChannelID, a.closed}, err
}

type closeNotify struct {
	sdk.Channel
	id     string
	closed chan string
}

func (c closeNotify) Close() error { c.closed <- c.id; return c.Channel.Close() }

// TestServeListenerStop: ending the context stops serving, ends running
// subscriptions and closes every open channel.
func TestServeListenerStop(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "a.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	a := closeRecorder{hosttest.New(), make(chan string, 2)}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- sdk.ServeListener(ctx, l, a, sdk.WithLogger(slog.New(slog.DiscardHandler))) }()

	conn, err := host.Dial(context.Background(), sock, "rec")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Configure(context.Background(), sdk.ConfigureRequest{ChannelID: "one"})
	if err != nil {
		t.Fatal(err)
	}
	subErr := make(chan error, 1)
	go func() {
		subErr <- ch.Subscribe(context.Background(), sdk.SubscribeRequest{}, sdk.SinkFunc(func(context.Context, sdk.Delivery) error { return nil }))
	}()
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("ServeListener: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeListener did not return after its context ended")
	}
	if id := <-a.closed; id != "one" {
		t.Fatalf("closed %q, want one", id)
	}
	if err := <-subErr; !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("subscribe on a stopped server: %v, want ErrUnavailable", err)
	}
}
