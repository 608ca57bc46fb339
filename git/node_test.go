package git_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/core/node"
	"github.com/remora-p2p/remora/core/node/nodetest"
	"github.com/remora-p2p/remora/git"
	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/testenv"
)

// repoNode is a node whose only channel is the shared repository.
func repoNode(t *testing.T, name, state string, r remote) *nodetest.Node {
	n := nodetest.New(t, name, state, nodetest.Channel{Name: "repo", Adapter: "git",
		Open: func(ctx context.Context, stateDir string) (sdk.Channel, error) {
			// no member name: each node gets its own random opaque ref
			cfg, _ := json.Marshal(map[string]any{"remote": r.url, "flush_interval": "200ms", "poll_min": "500ms", "poll_max": "2s"})
			return git.New().Configure(ctx, sdk.ConfigureRequest{ChannelID: "repo", Config: cfg, StateDir: stateDir, Logger: nodetest.Logger(name)})
		}})
	n.Tune = func(o *node.Options) { o.PresenceInterval, o.BoardPollInterval = 2*time.Second, time.Second }
	return n
}

// TestTwoNodesThroughRepo: two fresh nodes whose only common ground is a git
// repository (git daemon) join one circle, exchange presence records through
// it, connect directly, and deliver a message sent while one was offline.
func TestTwoNodesThroughRepo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two libp2p nodes")
	}
	r := daemonRemote(t)
	root := t.TempDir()
	a, b := repoNode(t, "alice", filepath.Join(root, "a"), r), repoNode(t, "bob", filepath.Join(root, "b"), r)
	a.Start()
	b.Start()
	defer a.Stop()
	ctx := context.Background()
	ci := nodetest.Circle(t, a, b)

	start := time.Now()
	testenv.WaitFor(t, "alice and bob connected directly", 90*time.Second, func() bool { return nodetest.Connected(a, b) })
	t.Logf("direct connection %v after the join", time.Since(start).Round(100*time.Millisecond))

	bID := b.N.ID()
	b.Stop()
	pushed := a.Ch.(sdk.Healther).Health(ctx).Counters["pushed_items"]
	if _, err := a.N.Send(ctx, api.SendRequest{Circle: ci, To: []string{bID.String()}, Text: "while you were out"}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the message pushed to the repo", 60*time.Second, func() bool {
		return a.Ch.(sdk.Healther).Health(ctx).Counters["pushed_items"] > pushed
	})
	b.Start()
	defer b.Stop()
	if b.N.ID() != bID {
		t.Fatalf("bob came back as %s, want %s", b.N.ID(), bID)
	}
	testenv.WaitFor(t, "bob got the offline message", 90*time.Second, func() bool {
		return nodetest.Texts(t, b.N)["while you were out"] >= 1
	})
	time.Sleep(3 * time.Second) // let the live retry and the channel copy settle
	if got := nodetest.Texts(t, b.N); got["while you were out"] != 1 {
		t.Fatalf("bob's inbox %v: want the message exactly once", got)
	}
	// nothing in the repository names a peer, or the software
	refs := gitCLI(t, "", "--git-dir="+r.bare, "for-each-ref", "--format=%(refname)")
	for _, id := range []string{a.N.ID().String(), bID.String(), "alice", "bob", "remora"} {
		if containsFold(refs, id) {
			t.Errorf("a ref names %q:\n%s", id, refs)
		}
	}
	files := gitCLI(t, "", "--git-dir="+r.bare, "log", "--all", "--format=%an %ae %s", "--name-only")
	for _, id := range []string{a.N.ID().String(), bID.String(), "alice", "bob", "while you were out", "remora"} {
		if containsFold(files, id) {
			t.Errorf("repository metadata or paths contain %q", id)
		}
	}
	t.Logf("repo refs:\n%s", refs)
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}
