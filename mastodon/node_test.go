package mastodon_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/core/envelope"
	"github.com/remora-p2p/remora/core/identity"
	"github.com/remora-p2p/remora/core/node"
	"github.com/remora-p2p/remora/core/store"
	"github.com/remora-p2p/remora/mastodon"
	"github.com/remora-p2p/remora/mastodon/mastodontest"
	"github.com/remora-p2p/remora/sdk"
)

// mastoNode is a core node whose only channel is its own account on the
// fake server.
type mastoNode struct {
	t        testing.TB
	name     string
	state    string
	srv      *mastodontest.Server
	acct     mastodontest.Account
	accounts []string
	n        *node.Node
	db       *store.DB
	ch       sdk.Channel
	cancel   context.CancelFunc
	done     chan error
}

func (m *mastoNode) start() {
	t := m.t
	t.Helper()
	ctx := context.Background()
	k, err := identity.Open(filepath.Join(m.state, "keys"), identity.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if m.db, err = store.Open(filepath.Join(m.state, "remora.db"), store.Options{}); err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(map[string]any{"server": m.srv.URL, "accounts": m.accounts, "poll_interval": "1s",
		"rate_limit": map[string]any{"requests": 5000, "per": "5m"}})
	m.ch, err = mastodon.New().Configure(ctx, sdk.ConfigureRequest{ChannelID: "masto", Config: cfg,
		Secrets:  map[string]string{mastodon.SecretToken: m.acct.Token},
		StateDir: filepath.Join(m.state, "adapter"), Logger: nodeLogger(m.name)})
	if err != nil {
		t.Fatal(err)
	}
	m.n, err = node.New(ctx, node.Options{
		Keyring: k, Store: m.db, Logger: nodeLogger(m.name), Name: m.name,
		ListenAddrs:       []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"},
		Channels:          []node.Channel{{Name: "masto", ID: "masto", Adapter: "mastodon", Impl: m.ch}},
		PresenceInterval:  time.Second,
		BoardPollInterval: time.Second,
		LiveTimeout:       2 * time.Second,
		AckDelay:          50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	m.cancel = cancel
	m.done = make(chan error, 1)
	go func() { m.done <- m.n.Run(rctx) }()
}

func (m *mastoNode) stop() {
	m.cancel()
	if err := <-m.done; err != nil {
		m.t.Errorf("%s: Run: %v", m.name, err)
	}
	m.n.Close()
	m.ch.Close()
	m.db.Close()
}

func nodeLogger(name string) *slog.Logger {
	if os.Getenv("REMORA_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", name)
	}
	return slog.New(slog.DiscardHandler)
}

func (m *mastoNode) channelCounter(k string) int64 {
	chs, err := m.n.Channels(context.Background())
	if err != nil || len(chs) == 0 {
		return 0
	}
	return chs[0].Counters[k]
}

func inboxTexts(t testing.TB, n *node.Node) map[string]int {
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

func connected(a, b *mastoNode) bool {
	return a.n.Transport().PathTo(b.n.ID()).Live() || b.n.Transport().PathTo(a.n.ID()).Live()
}

// circleOverMastodon starts two fresh nodes whose only common ground is
// their accounts on one (fake) server, and joins bob to alice's circle
// through it.
func circleOverMastodon(t testing.TB, opts mastodontest.Options) (srv *mastodontest.Server, alice, bob *mastoNode, circleID string) {
	srv = mastodontest.New(opts)
	t.Cleanup(srv.Close)
	ua, ub := srv.AddAccount("alice"), srv.AddAccount("bob")
	root := t.TempDir()
	alice = &mastoNode{t: t, name: "alice", state: filepath.Join(root, "a"), srv: srv, acct: ua, accounts: []string{"bob"}}
	bob = &mastoNode{t: t, name: "bob", state: filepath.Join(root, "b"), srv: srv, acct: ub, accounts: []string{"alice"}}
	alice.start()
	bob.start()
	ctx := context.Background()
	ci, err := alice.n.CreateCircle(ctx, api.CreateCircleRequest{Name: "friends"})
	if err != nil {
		t.Fatal(err)
	}
	inv, err := alice.n.Invite(ctx, api.InviteRequest{Circle: ci.ID})
	if err != nil {
		t.Fatal(err)
	}
	jctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := bob.n.Join(jctx, api.JoinRequest{Invite: inv.Invite}); err != nil {
		chs, _ := alice.n.Channels(ctx)
		t.Fatalf("bob joining through Mastodon: %v (alice's channels: %+v)", err, chs)
	}
	return srv, alice, bob, ci.ID
}

func waitUntil(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", d, what)
}

// TestNodesOverMastodon: two fresh nodes sharing only their accounts on a
// Mastodon server join one circle through direct posts, exchange presence,
// connect directly; while bob is offline alice sends a short message and a
// 20 KB one, which travel as fragments in posts of at most 500 characters
// and arrive whole, each once; forged and garbage posts in between are
// dropped and counted.
func TestNodesOverMastodon(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two libp2p nodes")
	}
	// The budget is raised so that presence every second does not make this
	// a rate-limit test; TestRateLimit is that. The join runs on a server
	// allowing 2000 characters: core/node does not fragment join frames and
	// its welcome is about 1050 characters armored. Then the server goes back
	// to Mastodon's 500 and both nodes restart, reading the new limit.
	srv, a, b, circleID := circleOverMastodon(t, mastodontest.Options{RateLimit: 5000, StatusLimit: 5000, MaxCharacters: 2000})
	srv.SetMaxCharacters(500)
	a.stop()
	b.stop()
	a.start()
	b.start()
	if got := a.ch.Capabilities().MaxPayload; got != 500-len("@bob ") {
		t.Fatalf("alice's max payload %d after the restart, want %d", got, 500-len("@bob "))
	}
	waitUntil(t, "alice and bob connected directly", time.Minute, func() bool { return connected(a, b) })

	ctx := context.Background()
	if _, err := a.n.Send(ctx, api.SendRequest{Circle: circleID, Text: "hello bob"}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "bob got the broadcast", 30*time.Second, func() bool { return inboxTexts(t, b.n)["hello bob"] == 1 })

	bobID := b.n.ID()
	b.stop()
	big := strings.Repeat("twenty kilobytes of text, ", 800)[:20*1024]
	postsBefore := srv.Posts()
	for _, text := range []string{"while you were out", big} {
		if _, err := a.n.Send(ctx, api.SendRequest{Circle: circleID, To: []string{bobID.String()}, Text: text}); err != nil {
			t.Fatal(err)
		}
	}
	// Forged and garbage posts from alice's account and a stranger's.
	srv.AddAccount("mallory")
	forged := make([]byte, 300)
	rand.Read(forged)
	forged[0] = envelope.Version
	srv.Post("alice", "@bob rm1"+base64.RawURLEncoding.EncodeToString(forged)+".", "direct")
	srv.Post("alice", "@bob rm1"+strings.Repeat("A", 200)+".", "direct")
	srv.Post("mallory", "@bob rm1"+base64.RawURLEncoding.EncodeToString(forged)+".", "direct")
	srv.Post("alice", "@bob are you there?", "direct")
	// 20 KB at ~370 envelope bytes per post is over 50 posts.
	waitUntil(t, "the fragments posted", 2*time.Minute, func() bool { return srv.Posts()-postsBefore > 50 })
	b.start()
	defer b.stop()
	defer a.stop()
	waitUntil(t, "bob got both offline messages", 2*time.Minute, func() bool {
		got := inboxTexts(t, b.n)
		return got["while you were out"] >= 1 && got[big] >= 1
	})
	waitUntil(t, "alice and bob reconnected", time.Minute, func() bool { return connected(a, b) })
	time.Sleep(3 * time.Second) // let the live retry and the channel copy both land
	got := inboxTexts(t, b.n)
	if got["while you were out"] != 1 || got[big] != 1 || got["hello bob"] != 1 {
		t.Fatalf("bob's inbox: %d × short, %d × 20 KB, %d × hello; want each once", got["while you were out"], got[big], got["hello bob"])
	}
	dropped := int64(0)
	for k, v := range b.n.Counters() {
		if strings.HasPrefix(k, "dropped_") || strings.HasPrefix(k, "ignored_") {
			dropped += v
		}
	}
	if dropped < 2 {
		t.Errorf("bob's node counted %d dropped or ignored envelopes, want at least the 2 forged posts from alice (%v)", dropped, b.n.Counters())
	}
	if n := b.channelCounter("ignored_stranger"); n < 1 {
		t.Errorf("the adapter counted %d strangers' posts, want ≥ 1", n)
	}
	if n := b.channelCounter("ignored_plain"); n < 1 {
		t.Errorf("the adapter counted %d ordinary mentions, want ≥ 1", n)
	}
}
