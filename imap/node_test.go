package imap

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/core/identity"
	"github.com/remora-p2p/remora/core/node"
	"github.com/remora-p2p/remora/core/store"
	"github.com/remora-p2p/remora/sdk"
)

// mailNode is a remora node whose only channel is its member's account on
// the real mlmmj list circle@example.test.
type mailNode struct {
	t      *testing.T
	env    mailEnv
	user   string
	state  string
	n      *node.Node
	db     *store.DB
	ch     sdk.Channel
	cancel context.CancelFunc
	done   chan error
	// started is when start began; up is when Run was running.
	started time.Time
}

func nodeLogger(name string) *slog.Logger {
	if os.Getenv("REMORA_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", name)
	}
	return slog.New(slog.DiscardHandler)
}

func (mn *mailNode) start() {
	t := mn.t
	t.Helper()
	mn.started = time.Now()
	ctx := context.Background()
	k, err := identity.Open(filepath.Join(mn.state, "keys"), identity.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if mn.db, err = store.Open(filepath.Join(mn.state, "remora.db"), store.Options{}); err != nil {
		t.Fatal(err)
	}
	cfg := mn.env.config(ModeList, mn.user, map[string]any{"list_address": "circle@example.test"})
	mn.ch, err = New().Configure(ctx, sdk.ConfigureRequest{ChannelID: "mail", Config: cfg, Secrets: password(mn.user),
		StateDir: filepath.Join(mn.state, "adapter"), Logger: nodeLogger(mn.user)})
	if err != nil {
		t.Fatal(err)
	}
	mn.n, err = node.New(ctx, node.Options{
		Keyring: k, Store: mn.db, Logger: nodeLogger(mn.user), Name: mn.user,
		ListenAddrs:       []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"},
		Channels:          []node.Channel{{Name: "mail", ID: "circle-list", Adapter: "imap", Impl: mn.ch}},
		PresenceInterval:  5 * time.Second,
		BoardPollInterval: time.Second,
		LiveTimeout:       2 * time.Second,
		AckDelay:          100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	mn.cancel = cancel
	mn.done = make(chan error, 1)
	go func() { mn.done <- mn.n.Run(rctx) }()
}

func (mn *mailNode) stop() {
	mn.cancel()
	if err := <-mn.done; err != nil {
		mn.t.Errorf("%s: Run: %v", mn.user, err)
	}
	mn.ch.Close()
	mn.db.Close()
}

func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) time.Duration {
	t.Helper()
	t0 := time.Now()
	for time.Since(t0) < d {
		if cond() {
			return time.Since(t0)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", d, what)
	return 0
}

func inboxTexts(t *testing.T, n *node.Node) map[string]int {
	t.Helper()
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

func live(a, b *mailNode) bool {
	return a.n.Transport().PathTo(b.n.ID()).Live() || b.n.Transport().PathTo(a.n.ID()).Live()
}

// TestNodesOverMailingList: three members whose only channel is the real
// mlmmj list join a circle over it, find each other through presence
// records mailed to the list and connect directly, and a message to an
// offline member waits in her mailbox and reaches her once. A restarted
// member's time from cold start to its first direct stream is logged (the
// ≤ 3 s target; BENCHMARKS.md).
func TestNodesOverMailingList(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three libp2p nodes")
	}
	env := needMail(t)
	root := t.TempDir()
	nodes := map[string]*mailNode{}
	for _, u := range []string{"alice", "bob", "carol"} {
		env.empty(t, u, "INBOX")
		nodes[u] = &mailNode{t: t, env: env, user: u, state: filepath.Join(root, u)}
		nodes[u].start()
	}
	a, b, c := nodes["alice"], nodes["bob"], nodes["carol"]
	defer func() { a.stop(); b.stop() }()
	ctx := context.Background()
	ci, err := a.n.CreateCircle(ctx, api.CreateCircleRequest{Name: "friends"})
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range []*mailNode{b, c} {
		inv, err := a.n.Invite(ctx, api.InviteRequest{Circle: ci.ID})
		if err != nil {
			t.Fatal(err)
		}
		jctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		t0 := time.Now()
		got, err := j.n.Join(jctx, api.JoinRequest{Invite: inv.Invite})
		cancel()
		if err != nil || got.ID != ci.ID {
			t.Fatalf("%s joining over the list: %v (circle %s)", j.user, err, got.ID)
		}
		t.Logf("%s joined over the list in %v (request and welcome each through mlmmj and IDLE)", j.user, time.Since(t0).Round(time.Millisecond))
	}
	for _, p := range [][2]*mailNode{{a, b}, {a, c}, {b, c}} {
		d := waitUntil(t, fmt.Sprintf("%s and %s connected directly", p[0].user, p[1].user), 90*time.Second, func() bool { return live(p[0], p[1]) })
		t.Logf("%s-%s direct connection %v after the joins", p[0].user, p[1].user, d.Round(time.Millisecond))
	}
	if _, err := a.n.Send(ctx, api.SendRequest{Circle: ci.ID, Text: "hello all"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*mailNode{b, c} {
		waitUntil(t, n.user+" got the broadcast", 30*time.Second, func() bool { return inboxTexts(t, n.n)["hello all"] == 1 })
	}

	// Carol goes offline; bob's message to her goes to the list.
	cID := c.n.ID()
	c.stop()
	waitUntil(t, "bob noticed carol is gone", 30*time.Second, func() bool { return !live(b, c) })
	if _, err := b.n.Send(ctx, api.SendRequest{Circle: ci.ID, To: []string{cID.String()}, Text: "while you were out"}); err != nil {
		t.Fatal(err)
	}
	before := env.count(t, "carol", "INBOX")
	waitUntil(t, "the message mailed to carol's INBOX", 60*time.Second, func() bool { return env.count(t, "carol", "INBOX") > before })

	// Cold start: carol's node and channel come up from disk.
	c.start()
	defer c.stop()
	if c.n.ID() != cID {
		t.Fatalf("carol came back as %s", c.n.ID())
	}
	waitUntil(t, "carol's first direct stream", 60*time.Second, func() bool { return live(a, c) || live(b, c) })
	t.Logf("cold start (IMAP+SMTP connect, node start) → first direct connection: %v (target ≤ 3 s)", time.Since(c.started).Round(time.Millisecond))
	waitUntil(t, "carol got the offline message", 60*time.Second, func() bool { return inboxTexts(t, c.n)["while you were out"] >= 1 })
	time.Sleep(3 * time.Second) // live retries and list copies settle
	got := inboxTexts(t, c.n)
	if got["while you were out"] != 1 || got["hello all"] != 1 {
		t.Fatalf("carol's inbox %v: want each message exactly once", got)
	}
	for _, n := range []*mailNode{a, b, c} {
		if h := n.ch.(sdk.Healther).Health(ctx); h.State != sdk.HealthOK {
			t.Errorf("%s channel health %s: %s", n.user, h.State, h.Message)
		}
	}
}
