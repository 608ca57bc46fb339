package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/channeltest"
	"github.com/remora-p2p/remora/sdk/channeltest/faultproxy"
	"github.com/remora-p2p/remora/testenv"
)

// apache is a fresh collection on Apache's mod_dav (testenv/svc-web.sh),
// written with basic auth: the secrets username and password.
type apache struct {
	folder     string // http://127.0.0.1:PORT/kit-XXXX/ on the server itself
	proxy      *faultproxy.Proxy
	user, pass string
	state      []string
}

func newApache(t *testing.T) channeltest.Harness {
	v := testenv.Need(t, "web", "REMORA_WEB_DAV_URL", "REMORA_WEB_DAV_USER", "REMORA_WEB_DAV_PASSWORD_FILE")
	pass, err := os.ReadFile(v[2])
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	h := &apache{folder: strings.TrimSuffix(v[0], "/") + "/kit-" + hex.EncodeToString(b) + "/",
		user: v[1], pass: strings.TrimSpace(string(pass)), state: []string{t.TempDir(), t.TempDir()}}
	h.do(t, "MKCOL", h.folder, nil, http.StatusCreated)
	t.Cleanup(func() { h.do(t, "DELETE", h.folder, nil, http.StatusNoContent) })
	u, _ := url.Parse(v[0])
	if h.proxy, err = faultproxy.New(u.Host); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.proxy.Close() })
	return h
}

// do sends one request straight to the server, as another WebDAV client.
func (h *apache) do(t *testing.T, method, target string, body []byte, want int) {
	t.Helper()
	req, _ := http.NewRequest(method, target, strings.NewReader(string(body)))
	req.SetBasicAuth(h.user, h.pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %s, want %d", method, target, resp.Status, want)
	}
}

func (h *apache) Members() int                                       { return len(h.state) }
func (h *apache) Address(int) string                                 { return "" }
func (h *apache) StateDir(m int) string                              { return h.state[m] }
func (h *apache) Proxies() []*faultproxy.Proxy                       { return []*faultproxy.Proxy{h.proxy} }
func (h *apache) InvalidateCursor(context.Context, *testing.T) error { return sdk.ErrUnsupported }

func (h *apache) Open(ctx context.Context, t *testing.T, a sdk.Adapter, m int) (sdk.Channel, error) {
	u, _ := url.Parse(h.folder)
	u.Host = h.proxy.Addr()
	cfg, _ := json.Marshal(map[string]string{"url": u.String()})
	return a.Configure(ctx, sdk.ConfigureRequest{ChannelID: fmt.Sprint(m), Config: cfg, StateDir: h.state[m],
		Secrets: map[string]string{"username": h.user, "password": h.pass}, Logger: channeltest.Logger(t)})
}

// InsertBackdated uploads a file as another client would, late.
func (h *apache) InsertBackdated(ctx context.Context, t *testing.T, member int, data []byte) error {
	k := make([]byte, 12)
	rand.Read(k)
	h.do(t, "PUT", h.folder+base64.RawURLEncoding.EncodeToString(k), data, http.StatusCreated)
	return nil
}

// TestConformanceApache runs the kit against Apache httpd's mod_dav, a
// server people run, with the password as a secret.
func TestConformanceApache(t *testing.T) {
	channeltest.Run(t, adapter{}, newApache)
}

// TestWrongPassword: Apache's 401 is CodeAuthFailed at Configure.
func TestWrongPassword(t *testing.T) {
	bad := *newApache(t).(*apache)
	bad.pass = "not-the-password"
	_, err := bad.Open(context.Background(), t, adapter{}, 0)
	if sdk.CodeOf(err) != sdk.CodeAuthFailed {
		t.Fatalf("wrong password: got %v, want auth failed", err)
	}
}
