package plugins_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/remora-p2p/remora/dir"
	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/host/hosttest"
)

// envHostSecret is set in the host's environment; no adapter may see it.
const envHostSecret = "REMORA_TEST_HOST_SECRET"

// TestMain makes the test binary double as the remora binary: run as
// `<test binary> adapter NAME [describe]` (what plugins.Builtin starts) it
// is the adapter process NAME, well or badly behaved (go-plugin's
// helper-process trick).
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "adapter" {
		os.Exit(child(os.Args[2], os.Args[3:]))
	}
	os.Setenv(envHostSecret, "hunter2")
	os.Exit(m.Run())
}

func child(mode string, args []string) int {
	var a sdk.Adapter
	switch mode {
	case "mem+spy": // Options.Together
		if err := sdk.ServeMany(map[string]sdk.Adapter{"mem": hosttest.New(), "spy": &spy{}}, sdk.WithArgs(args)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	case "mem":
		a = hosttest.New()
	case "dir":
		a = dir.New()
	case "spy":
		a = &spy{}
	case "slow":
		time.Sleep(time.Minute)
		a = hosttest.New()
	case "wrong-cookie":
		plugin.Serve(&plugin.ServeConfig{
			HandshakeConfig: plugin.HandshakeConfig{ProtocolVersion: 1, MagicCookieKey: "OTHER_APP_PLUGIN", MagicCookieValue: "x"},
			Plugins:         plugin.PluginSet{},
		})
		return 0
	case "wrong-version":
		plugin.Serve(&plugin.ServeConfig{
			HandshakeConfig: plugin.HandshakeConfig{ProtocolVersion: sdk.ProtocolVersion + 1,
				MagicCookieKey: "REMORA_ADAPTER_PLUGIN", MagicCookieValue: os.Getenv("REMORA_ADAPTER_PLUGIN")},
			Plugins: plugin.PluginSet{},
		})
		return 0
	case "garbage": // a wrong handshake line
		fmt.Println("hello from an adapter that never read the docs")
		time.Sleep(time.Minute)
		return 0
	case "crash": // dies at start
		fmt.Fprintln(os.Stderr, "panic: cannot read my config")
		return 2
	case "oddcode":
		a = oddcode{hosttest.New()}
	case "flood":
		logger := slog.New(sdk.NewLogHandler(os.Stderr, slog.LevelDebug))
		for i := range floodLines {
			logger.Warn("flood", "i", i, "pad", strings.Repeat("x", 500))
		}
		a = hosttest.New()
	case "stubborn":
		signal.Ignore(syscall.SIGTERM)
		a = stubborn{hosttest.New()}
	case "hog":
		a = hog{hosttest.New()}
	default:
		fmt.Fprintf(os.Stderr, "unknown child %q\n", mode)
		return 2
	}
	if err := sdk.Serve(a, sdk.WithArgs(args)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// spy is an adapter that reports, through channel health, which secrets
// it has received and whether it can see the host's environment.
type spy struct {
	mu      sync.Mutex
	secrets []string
}

func (s *spy) Info() sdk.Info {
	i := hosttest.New().Info()
	i.Name = "spy"
	return i
}

func (s *spy) Configure(ctx context.Context, req sdk.ConfigureRequest) (sdk.Channel, error) {
	s.mu.Lock()
	for k, v := range req.Secrets {
		s.secrets = append(s.secrets, k+"="+v)
	}
	s.mu.Unlock()
	ch, err := hosttest.New().Configure(ctx, req)
	if err != nil {
		return nil, err
	}
	return spyChannel{ch.(*hosttest.Channel), s}, nil
}

type spyChannel struct {
	*hosttest.Channel
	s *spy
}

func (c spyChannel) Health(context.Context) sdk.Health {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	seen := append([]string(nil), c.s.secrets...)
	sort.Strings(seen)
	return sdk.Health{State: sdk.HealthOK, Message: "secrets=" + strings.Join(seen, ",") + " env=" + os.Getenv(envHostSecret)}
}

// oddcode answers Configure with an error code from a newer protocol.
type oddcode struct{ sdk.Adapter }

func (oddcode) Configure(context.Context, sdk.ConfigureRequest) (sdk.Channel, error) {
	return nil, &sdk.Error{Code: 42, Message: "the moon is in the wrong phase"}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

const floodLines = 3000

// stubborn is an adapter whose channels never finish closing; with SIGTERM
// ignored, only a kill ends it.
type stubborn struct{ sdk.Adapter }

func (s stubborn) Configure(ctx context.Context, req sdk.ConfigureRequest) (sdk.Channel, error) {
	ch, err := s.Adapter.Configure(ctx, req)
	if err != nil {
		return nil, err
	}
	return hangingClose{ch}, nil
}

type hangingClose struct{ sdk.Channel }

func (hangingClose) Close() error { select {} }
