// Package node_test runs the conformance kit against the JavaScript
// reference adapter (adapter.js) as a subprocess, and installs it the way a
// user does. Node.js and the npm packages come from testenv/svc-node.sh.
package node_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/remora-p2p/remora/plugins"
	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/channeltest"
	"github.com/remora-p2p/remora/testenv"
)

// launcher writes the executable a user installs: a shell script that runs
// adapter.js with Node and the packages svc-node.sh installed. (A packaged
// adapter would bundle them into one file instead.)
func launcher(t *testing.T) string {
	t.Helper()
	v := testenv.Need(t, "node", "REMORA_NODE", "REMORA_NODE_MODULES")
	js, err := filepath.Abs("adapter.js")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "remora-adapter-nodefolder")
	script := fmt.Sprintf("#!/bin/sh\nNODE_PATH='%s' exec '%s' '%s' \"$@\"\n", v[1], v[0], js)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// info is the Go side's view of the adapter for the kit, which uses only
// Info in subprocess mode.
type info struct{}

func (info) Info() sdk.Info { return sdk.Info{Name: "nodefolder"} }
func (info) Configure(context.Context, sdk.ConfigureRequest) (sdk.Channel, error) {
	return nil, sdk.ErrUnsupported
}

// harness is one folder seen by two devices with a state dir each.
type harness struct {
	root  string
	state []string
}

func newHarness(t *testing.T) channeltest.Harness {
	return &harness{root: t.TempDir(), state: []string{t.TempDir(), t.TempDir()}}
}

func (h *harness) Members() int          { return len(h.state) }
func (h *harness) Address(int) string    { return "" }
func (h *harness) StateDir(m int) string { return h.state[m] }

func (h *harness) Open(ctx context.Context, t *testing.T, a sdk.Adapter, m int) (sdk.Channel, error) {
	cfg, _ := json.Marshal(map[string]string{"path": h.root})
	return a.Configure(ctx, sdk.ConfigureRequest{ChannelID: fmt.Sprint(m), Config: cfg, StateDir: h.state[m]})
}

// InvalidateCursor wipes the folder, as when friends replace the share.
func (h *harness) InvalidateCursor(context.Context, *testing.T) error {
	return channeltest.EmptyDir(h.root)
}

// InsertBackdated drops a file into the log as a sync tool delivers a
// friend's file late.
func (h *harness) InsertBackdated(ctx context.Context, t *testing.T, member int, data []byte) error {
	k := make([]byte, 12)
	rand.Read(k)
	return os.WriteFile(filepath.Join(h.root, "log", base64.RawURLEncoding.EncodeToString(k)), data, 0o644)
}

// TestConformance runs every case of the kit against adapter.js over the
// real wire protocol: go-plugin handshake, AutoMTLS, the gRPC service.
func TestConformance(t *testing.T) {
	bin := launcher(t)
	channeltest.Run(t, info{}, newHarness, channeltest.Subprocess(bin), channeltest.Settle(time.Second))
}

// TestInstall installs adapter.js as a user does (remora adapter install:
// describe, copy, pin) and opens a channel on it through the supervisor.
func TestInstall(t *testing.T) {
	bin := launcher(t)
	s := plugins.New(plugins.Options{Dir: filepath.Join(t.TempDir(), "plugins")})
	t.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	in, err := s.Install(ctx, bin)
	if err != nil {
		t.Fatalf("install: %v", err)
	}
	if in.Name != "nodefolder" {
		t.Fatalf("installed as %q, want nodefolder", in.Name)
	}
	root := t.TempDir()
	cfg, _ := json.Marshal(map[string]string{"path": root})
	ch, err := s.Open(ctx, "nodefolder", sdk.ConfigureRequest{ChannelID: "c", Config: cfg, StateDir: t.TempDir()})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	res := channeltest.Publish(t, ch, sdk.PublishItem{Data: []byte("hello"), IdempotencyKey: "k1"})
	if res[0].ID != "k1" {
		t.Errorf("published as %q", res[0].ID)
	}
	if _, err := os.Stat(filepath.Join(root, "log", "k1")); err != nil {
		t.Errorf("the item is not in the folder: %v", err)
	}
	_, err = s.Open(ctx, "nodefolder", sdk.ConfigureRequest{ChannelID: "d", Config: json.RawMessage(`{"path":"relative"}`), StateDir: t.TempDir()})
	if sdk.CodeOf(err) != sdk.CodeBadConfig {
		t.Errorf("bad config: got %v, want a bad-config error", err)
	}
}
