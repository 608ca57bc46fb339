package dir_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/remora-p2p/remora/dir"
	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/channeltest"
)

// harness is one shared folder seen by two devices, each with its own
// state dir: two friends syncing the folder, or one NFS share.
type harness struct {
	root  string
	state []string
	poll  string
}

func newHarness(t *testing.T) channeltest.Harness {
	return &harness{
		root:  t.TempDir(),
		state: []string{t.TempDir(), t.TempDir()},
		poll:  "20ms",
	}
}

func (h *harness) Members() int       { return len(h.state) }
func (h *harness) Address(int) string { return "" }

func (h *harness) Open(ctx context.Context, t *testing.T, a sdk.Adapter, m int) (sdk.Channel, error) {
	cfg, err := json.Marshal(map[string]string{"path": h.root, "poll_interval": h.poll})
	if err != nil {
		return nil, err
	}
	return a.Configure(ctx, sdk.ConfigureRequest{
		ChannelID: fmt.Sprintf("dir-member-%d", m),
		Config:    cfg,
		StateDir:  h.state[m],
		Logger:    slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
}

// InvalidateCursor wipes the folder, as when friends replace the share.
func (h *harness) InvalidateCursor(context.Context, *testing.T) error {
	return channeltest.EmptyDir(h.root)
}

// InsertBackdated drops a file into a bucket three hours old, the way a sync
// tool delivers a friend's file late: written to a temporary name, then
// renamed.
func (h *harness) InsertBackdated(ctx context.Context, t *testing.T, member int, data []byte) error {
	bucket := filepath.Join(h.root, "log", time.Now().Add(-3*time.Hour).UTC().Format("2006010215"))
	if err := os.MkdirAll(bucket, 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(bucket, ".syncthing.incoming.tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	k := make([]byte, 16)
	rand.Read(k)
	return os.Rename(tmp, filepath.Join(bucket, base64.RawURLEncoding.EncodeToString(k)))
}

// testWriter sends adapter logs to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func TestConformance(t *testing.T) {
	channeltest.Run(t, dir.New(), newHarness)
}

// TestConformanceSubprocess runs the kit against dir as a real adapter
// process: this test binary re-executed, served by sdk.Serve, reached
// through sdk/host over go-plugin with AutoMTLS.
func TestConformanceSubprocess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an adapter process per case; run without -short")
	}
	channeltest.Run(t, dir.New(), newHarness, channeltest.Self())
}

// StateDir lets the kit lose member m's state or put back an older copy.
func (h *harness) StateDir(m int) string { return h.state[m] }
