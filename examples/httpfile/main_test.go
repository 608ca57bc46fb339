package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/webdav"

	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/channeltest"
	"github.com/remora-p2p/remora/sdk/channeltest/faultproxy"
	"github.com/remora-p2p/remora/testenv"
)

func TestMain(m *testing.M) {
	channeltest.ServeIfChild(adapter{}) // under channeltest.Self this binary is the adapter
	os.Exit(m.Run())
}

// harness is a fresh collection on a WebDAV server behind a
// fault-injecting proxy, shared by two members with a state dir each;
// with user set, written with basic auth (the secrets username and
// password).
type harness struct {
	folder     string // http://HOST/kit-XXXX/ on the server itself
	proxy      *faultproxy.Proxy
	user, pass string
	state      []string
}

// newHarness serves a folder with golang.org/x/net/webdav, the server
// rclone and many Go tools embed.
func newHarness(t *testing.T) channeltest.Harness {
	srv := httptest.NewServer(&webdav.Handler{FileSystem: webdav.Dir(t.TempDir()), LockSystem: webdav.NewMemLS()})
	t.Cleanup(srv.Close)
	return newCollection(t, srv.URL, "", "")
}

// newCollection makes a fresh collection under server and a proxy to it.
func newCollection(t *testing.T, server, user, pass string) *harness {
	b := make([]byte, 6)
	rand.Read(b)
	h := &harness{folder: strings.TrimSuffix(server, "/") + "/kit-" + hex.EncodeToString(b) + "/",
		user: user, pass: pass, state: []string{t.TempDir(), t.TempDir()}}
	h.do(t, "MKCOL", h.folder, nil, http.StatusCreated)
	// A write the closed channel had in flight may land while Apache
	// deletes the folder (207 Multi-Status: part not deleted): again.
	t.Cleanup(func() {
		testenv.WaitFor(t, "the collection deleted", 30*time.Second, func() bool {
			return h.status(t, "DELETE", h.folder) != http.StatusMultiStatus
		})
		h.do(t, "DELETE", h.folder, nil, http.StatusNotFound)
	})
	u, _ := url.Parse(server)
	var err error
	if h.proxy, err = faultproxy.New(u.Host); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.proxy.Close() })
	return h
}

// do sends one request straight to the server, as another WebDAV client.
func (h *harness) do(t *testing.T, method, target string, body []byte, want int) {
	t.Helper()
	if got := h.request(t, method, target, body); got != want {
		t.Fatalf("%s %s: %d, want %d", method, target, got, want)
	}
}

// status makes a bodiless request and returns its status code.
func (h *harness) status(t *testing.T, method, target string) int {
	t.Helper()
	return h.request(t, method, target, nil)
}

func (h *harness) request(t *testing.T, method, target string, body []byte) int {
	t.Helper()
	req, _ := http.NewRequest(method, target, strings.NewReader(string(body)))
	if h.user != "" {
		req.SetBasicAuth(h.user, h.pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (h *harness) Members() int                                       { return len(h.state) }
func (h *harness) Address(int) string                                 { return "" }
func (h *harness) StateDir(m int) string                              { return h.state[m] }
func (h *harness) Proxies() []*faultproxy.Proxy                       { return []*faultproxy.Proxy{h.proxy} }
func (h *harness) InvalidateCursor(context.Context, *testing.T) error { return sdk.ErrUnsupported }

func (h *harness) Open(ctx context.Context, t *testing.T, a sdk.Adapter, m int) (sdk.Channel, error) {
	u, _ := url.Parse(h.folder)
	u.Host = h.proxy.Addr()
	cfg, _ := json.Marshal(map[string]string{"url": u.String()})
	return a.Configure(ctx, sdk.ConfigureRequest{ChannelID: fmt.Sprint(m), Config: cfg, StateDir: h.state[m],
		Secrets: map[string]string{"username": h.user, "password": h.pass}, Logger: channeltest.Logger(t)})
}

// InsertBackdated uploads a file as another client would, late: it sorts
// nowhere in particular.
func (h *harness) InsertBackdated(ctx context.Context, t *testing.T, member int, data []byte) error {
	k := make([]byte, 12)
	rand.Read(k)
	h.do(t, "PUT", h.folder+base64.RawURLEncoding.EncodeToString(k), data, http.StatusCreated)
	return nil
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
