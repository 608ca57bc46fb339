package git_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/core/identity"
	"github.com/remora-p2p/remora/core/node"
	"github.com/remora-p2p/remora/core/store"
	"github.com/remora-p2p/remora/git"
	"github.com/remora-p2p/remora/sdk"
)

// gitNode is one remora node whose only channel is the shared repository.
type gitNode struct {
	t      *testing.T
	name   string
	state  string
	r      remote
	n      *node.Node
	db     *store.DB
	ch     sdk.Channel
	cancel context.CancelFunc
	done   chan error
}

func (g *gitNode) start() {
	t := g.t
	t.Helper()
	ctx := context.Background()
	k, err := identity.Open(filepath.Join(g.state, "keys"), identity.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if g.db, err = store.Open(filepath.Join(g.state, "remora.db"), store.Options{}); err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(map[string]any{"remote": g.r.url, "flush_interval": "200ms", "poll_min": "500ms", "poll_max": "2s"})
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("REMORA_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", g.name)
	}
	// no member name: each node gets its own random opaque ref
	g.ch, err = git.New().Configure(ctx, sdk.ConfigureRequest{ChannelID: "repo", Config: cfg,
		StateDir: filepath.Join(g.state, "adapter"), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	g.n, err = node.New(ctx, node.Options{
		Keyring: k, Store: g.db, Logger: log, Name: g.name,
		ListenAddrs:       []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"},
		Channels:          []node.Channel{{Name: "repo", Adapter: "git", Impl: g.ch}},
		PresenceInterval:  2 * time.Second,
		BoardPollInterval: time.Second,
		LiveTimeout:       2 * time.Second,
		AckDelay:          50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	g.cancel = cancel
	g.done = make(chan error, 1)
	go func() { g.done <- g.n.Run(rctx) }()
}

func (g *gitNode) stop() {
	g.cancel()
	if err := <-g.done; err != nil {
		g.t.Errorf("%s: Run: %v", g.name, err)
	}
	g.ch.Close()
	g.db.Close()
}

func eventually(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", d, what)
}

func inboxTexts(t *testing.T, n *node.Node) map[string]int {
	msgs, err := n.Messages(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, m := range msgs {
		out[m.Text]++
	}
	return out
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
	a := &gitNode{t: t, name: "alice", state: filepath.Join(root, "a"), r: r}
	b := &gitNode{t: t, name: "bob", state: filepath.Join(root, "b"), r: r}
	a.start()
	b.start()
	defer a.stop()
	ctx := context.Background()
	ci, err := a.n.CreateCircle(ctx, api.CreateCircleRequest{Name: "friends"})
	if err != nil {
		t.Fatal(err)
	}
	inv, err := a.n.Invite(ctx, api.InviteRequest{Circle: ci.ID})
	if err != nil {
		t.Fatal(err)
	}
	jctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if _, err := b.n.Join(jctx, api.JoinRequest{Invite: inv.Invite}); err != nil {
		t.Fatalf("bob joining through the repo: %v", err)
	}

	start := time.Now()
	eventually(t, "alice and bob connected directly", 90*time.Second, func() bool {
		return a.n.Transport().PathTo(b.n.ID()).Live() || b.n.Transport().PathTo(a.n.ID()).Live()
	})
	t.Logf("direct connection %v after the join", time.Since(start).Round(100*time.Millisecond))

	bID := b.n.ID()
	b.stop()
	pushed := a.ch.(sdk.Healther).Health(ctx).Counters["pushed_items"]
	if _, err := a.n.Send(ctx, api.SendRequest{Circle: ci.ID, To: []string{bID.String()}, Text: "while you were out"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the message pushed to the repo", 60*time.Second, func() bool {
		return a.ch.(sdk.Healther).Health(ctx).Counters["pushed_items"] > pushed
	})
	b.start()
	defer b.stop()
	if b.n.ID() != bID {
		t.Fatalf("bob came back as %s, want %s", b.n.ID(), bID)
	}
	eventually(t, "bob got the offline message", 90*time.Second, func() bool {
		return inboxTexts(t, b.n)["while you were out"] >= 1
	})
	time.Sleep(3 * time.Second) // let the live retry and the channel copy settle
	if got := inboxTexts(t, b.n); got["while you were out"] != 1 {
		t.Fatalf("bob's inbox %v: want the message exactly once", got)
	}
	// nothing in the repository names a peer
	refs := gitCLI(t, "", "--git-dir="+r.bare, "for-each-ref", "--format=%(refname)")
	for _, id := range []string{a.n.ID().String(), bID.String(), "alice", "bob"} {
		if containsFold(refs, id) {
			t.Errorf("a ref names %q:\n%s", id, refs)
		}
	}
	files := gitCLI(t, "", "--git-dir="+r.bare, "log", "--all", "--format=%an %ae %s", "--name-only")
	for _, id := range []string{a.n.ID().String(), bID.String(), "alice", "bob", "while you were out"} {
		if containsFold(files, id) {
			t.Errorf("repository metadata or paths contain %q", id)
		}
	}
	t.Logf("repo refs:\n%s", refs)
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}
