package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/core/node/nodetest"
	"github.com/remora-p2p/remora/dir"
	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/testenv"
)

// TestFormCircleAtRest: a circle formed before its members start (what the
// 150-member scale benchmark stands on) is one the nodes load and use: each
// sees the whole roster, and a message each sends reaches every other.
func TestFormCircleAtRest(t *testing.T) {
	root := t.TempDir()
	shared := filepath.Join(root, "shared")
	if err := os.MkdirAll(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	const n = 5
	nodes := make([]*nodetest.Node, n)
	for i := range nodes {
		name := fmt.Sprintf("m%d", i)
		nodes[i] = nodetest.New(t, name, filepath.Join(root, name), nodetest.Channel{Name: "shared", ID: "shared", Adapter: "dir",
			Open: func(ctx context.Context, stateDir string) (sdk.Channel, error) {
				raw, _ := json.Marshal(map[string]any{"path": shared, "poll_interval": "50ms"})
				return dir.New().Configure(ctx, sdk.ConfigureRequest{ChannelID: "shared", Config: raw, StateDir: stateDir, Logger: nodetest.Logger(name)})
			}})
	}
	ci := nodetest.FormCircleAtRest(t, nodes)
	for _, nd := range nodes {
		nd.Start()
		defer nd.Stop()
	}
	ctx := context.Background()
	for _, nd := range nodes {
		st, err := nd.N.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if cs := st.Circles; len(cs) != 1 || cs[0].ID != ci || len(cs[0].Members) != n {
			t.Fatalf("%s holds circles %+v, want %s with %d members", nd.Name, st.Circles, ci, n)
		}
	}
	for _, nd := range nodes {
		if _, err := nd.N.Send(ctx, api.SendRequest{Circle: ci, Text: "hello from " + nd.Name}); err != nil {
			t.Fatalf("%s sends: %v", nd.Name, err)
		}
	}
	for _, nd := range nodes {
		testenv.WaitFor(t, nd.Name+" holding everyone's message", 60*time.Second, func() bool {
			got := nodetest.Texts(t, nd.N)
			for _, o := range nodes {
				if o != nd && got["hello from "+o.Name] != 1 {
					return false
				}
			}
			return true
		})
	}
}
