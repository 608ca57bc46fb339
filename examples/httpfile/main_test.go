package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/net/webdav"

	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/channeltest"
	"github.com/remora-p2p/remora/sdk/channeltest/faultproxy"
)

func TestMain(m *testing.M) {
	channeltest.ServeIfChild(adapter{}) // under channeltest.Self this binary is the adapter
	os.Exit(m.Run())
}

// harness is one WebDAV server (golang.org/x/net/webdav over a folder, the
// server rclone and many Go tools embed) behind a fault-injecting proxy,
// shared by two members with a state dir each.
type harness struct {
	root  string // the folder the server serves
	proxy *faultproxy.Proxy
	state []string
}

func newHarness(t *testing.T) channeltest.Harness {
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "circle"), 0o755); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(&webdav.Handler{FileSystem: webdav.Dir(root), LockSystem: webdav.NewMemLS()})
	t.Cleanup(srv.Close)
	p, err := faultproxy.New(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return &harness{root: root, proxy: p, state: []string{t.TempDir(), t.TempDir()}}
}

func (h *harness) Members() int                                       { return len(h.state) }
func (h *harness) Address(int) string                                 { return "" }
func (h *harness) StateDir(m int) string                              { return h.state[m] }
func (h *harness) Proxies() []*faultproxy.Proxy                       { return []*faultproxy.Proxy{h.proxy} }
func (h *harness) InvalidateCursor(context.Context, *testing.T) error { return sdk.ErrUnsupported }

func (h *harness) Open(ctx context.Context, t *testing.T, a sdk.Adapter, m int) (sdk.Channel, error) {
	cfg, _ := json.Marshal(map[string]string{"url": "http://" + h.proxy.Addr() + "/circle/"})
	return a.Configure(ctx, sdk.ConfigureRequest{ChannelID: fmt.Sprint(m), Config: cfg, StateDir: h.state[m], Logger: channeltest.Logger(t)})
}

// InsertBackdated writes a file straight into the served folder, as a late
// upload by another client: it sorts nowhere in particular.
func (h *harness) InsertBackdated(ctx context.Context, t *testing.T, member int, data []byte) error {
	k := make([]byte, 12)
	rand.Read(k)
	return os.WriteFile(filepath.Join(h.root, "circle", base64.RawURLEncoding.EncodeToString(k)), data, 0o644)
}

func TestConformance(t *testing.T) {
	channeltest.Run(t, adapter{}, newHarness)
}

// TestConformanceSubprocess runs the same kit against this test binary
// re-executed as the adapter process, over the real wire protocol.
func TestConformanceSubprocess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an adapter process per case; run without -short")
	}
	channeltest.Run(t, adapter{}, newHarness, channeltest.Self())
}

// TestBadConfig: a wrong URL or an unknown field is CodeBadConfig, named.
func TestBadConfig(t *testing.T) {
	for _, cfg := range []string{`{"url":"ftp://x/"}`, `{"url":"http://127.0.0.1:1/","usr":"x"}`, `{"url":7}`} {
		_, err := adapter{}.Configure(context.Background(), sdk.ConfigureRequest{Config: json.RawMessage(cfg), StateDir: t.TempDir()})
		if sdk.CodeOf(err) != sdk.CodeBadConfig {
			t.Errorf("config %s: got %v, want a bad-config error", cfg, err)
		}
	}
}
