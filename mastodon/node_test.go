package mastodon_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/core/envelope"
	"github.com/remora-p2p/remora/core/node"
	"github.com/remora-p2p/remora/core/node/nodetest"
	"github.com/remora-p2p/remora/mastodon"
	"github.com/remora-p2p/remora/mastodon/mastodontest"
	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/testenv"
	"github.com/remora-p2p/remora/testenv/gotosocial"
)

// accountNode is a core node whose only channel is its own account on the
// fake server, addressing the other members' accounts.
func accountNode(t testing.TB, name, state string, srv *mastodontest.Server, acct mastodontest.Account, others []string) *nodetest.Node {
	n := nodetest.New(t, name, state, nodetest.Channel{Name: "masto", ID: "masto", Adapter: "mastodon",
		Open: func(ctx context.Context, stateDir string) (sdk.Channel, error) {
			cfg, _ := json.Marshal(map[string]any{"server": srv.URL, "accounts": others, "poll_interval": "1s",
				"rate_limit": map[string]any{"requests": 5000, "per": "5m"}})
			return mastodon.New().Configure(ctx, sdk.ConfigureRequest{ChannelID: "masto", Config: cfg,
				Secrets: map[string]string{mastodon.SecretToken: acct.Token}, StateDir: stateDir, Logger: nodetest.Logger(name)})
		}})
	n.Tune = func(o *node.Options) { o.BoardPollInterval = time.Second }
	return n
}

func channelCounter(n *nodetest.Node, k string) int64 {
	chs, err := n.N.Channels(context.Background())
	if err != nil || len(chs) == 0 {
		return 0
	}
	return chs[0].Counters[k]
}

// circleOverMastodon starts two fresh nodes whose only common ground is
// their accounts on one (fake) server, and joins bob to alice's circle
// through it (the join frames split into posts that fit the limit).
func circleOverMastodon(t testing.TB, opts mastodontest.Options) (srv *mastodontest.Server, alice, bob *nodetest.Node, circleID string) {
	srv = mastodontest.New(opts)
	t.Cleanup(srv.Close)
	ua, ub := srv.AddAccount("alice"), srv.AddAccount("bob")
	root := t.TempDir()
	alice = accountNode(t, "alice", filepath.Join(root, "a"), srv, ua, []string{"bob"})
	bob = accountNode(t, "bob", filepath.Join(root, "b"), srv, ub, []string{"alice"})
	alice.Start()
	bob.Start()
	return srv, alice, bob, nodetest.Circle(t, alice, bob)
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
	// a rate-limit test; TestRateLimit is that. The server allows Mastodon's
	// stock 500 characters: the welcome (~1050 characters armored) crosses
	// it in parts.
	srv, a, b, circleID := circleOverMastodon(t, mastodontest.Options{RateLimit: 5000, StatusLimit: 5000, MaxCharacters: 500})
	if got := a.Ch.Capabilities().MaxPayload; got != 500-len("@bob ") {
		t.Fatalf("alice's max payload %d after the restart, want %d", got, 500-len("@bob "))
	}
	testenv.WaitFor(t, "alice and bob connected directly", time.Minute, func() bool { return nodetest.Connected(a, b) })

	ctx := context.Background()
	if _, err := a.N.Send(ctx, api.SendRequest{Circle: circleID, Text: "hello bob"}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "bob got the broadcast", 30*time.Second, func() bool { return nodetest.Texts(t, b.N)["hello bob"] == 1 })

	bobID := b.N.ID()
	b.Stop()
	big := strings.Repeat("twenty kilobytes of text, ", 800)[:20*1024]
	postsBefore := srv.Posts()
	for _, text := range []string{"while you were out", big} {
		if _, err := a.N.Send(ctx, api.SendRequest{Circle: circleID, To: []string{bobID.String()}, Text: text}); err != nil {
			t.Fatal(err)
		}
	}
	// Forged and garbage posts from alice's account and a stranger's.
	srv.AddAccount("mallory")
	forged := make([]byte, 300)
	rand.Read(forged)
	forged[0] = envelope.Version
	prefix := node.ArmorPrefix("masto")
	srv.Post("alice", "@bob "+prefix+base64.RawURLEncoding.EncodeToString(forged)+".", "direct")
	srv.Post("alice", "@bob "+prefix+strings.Repeat("A", 200)+".", "direct")
	srv.Post("mallory", "@bob "+prefix+base64.RawURLEncoding.EncodeToString(forged)+".", "direct")
	srv.Post("alice", "@bob are you there?", "direct")
	// 20 KB at ~370 envelope bytes per post is over 50 posts.
	testenv.WaitFor(t, "the fragments posted", 2*time.Minute, func() bool { return srv.Posts()-postsBefore > 50 })
	b.Start()
	defer b.Stop()
	defer a.Stop()
	testenv.WaitFor(t, "bob got both offline messages", 2*time.Minute, func() bool {
		got := nodetest.Texts(t, b.N)
		return got["while you were out"] >= 1 && got[big] >= 1
	})
	testenv.WaitFor(t, "alice and bob reconnected", time.Minute, func() bool { return nodetest.Connected(a, b) })
	time.Sleep(3 * time.Second) // let the live retry and the channel copy both land
	got := nodetest.Texts(t, b.N)
	if got["while you were out"] != 1 || got[big] != 1 || got["hello bob"] != 1 {
		t.Fatalf("bob's inbox: %d × short, %d × 20 KB, %d × hello; want each once", got["while you were out"], got[big], got["hello bob"])
	}
	dropped := int64(0)
	for k, v := range b.N.Counters() {
		if strings.HasPrefix(k, "dropped_") || strings.HasPrefix(k, "ignored_") {
			dropped += v
		}
	}
	if dropped < 2 {
		t.Errorf("bob's node counted %d dropped or ignored envelopes, want at least the 2 forged posts from alice (%v)", dropped, b.N.Counters())
	}
	if n := channelCounter(b, "ignored_stranger"); n < 1 {
		t.Errorf("the adapter counted %d strangers' posts, want ≥ 1", n)
	}
	if n := channelCounter(b, "ignored_plain"); n < 1 {
		t.Errorf("the adapter counted %d ordinary mentions, want ≥ 1", n)
	}
}

// gtsNode is a core node whose only channel is its own account on the
// GoToSocial server, addressing the other members' accounts. Requests from
// loopback are exempt from the test server's rate limit, so the declared
// limit is raised as on the fake (TestGoToSocialRateLimit is that test).
func gtsNode(t testing.TB, name, state, server string, acct gotosocial.Account, others []string, extra map[string]any) *nodetest.Node {
	n := nodetest.New(t, name, state, nodetest.Channel{Name: "masto", ID: "masto", Adapter: "mastodon",
		Open: func(ctx context.Context, stateDir string) (sdk.Channel, error) {
			c := map[string]any{"server": server, "accounts": others,
				"rate_limit": map[string]any{"requests": 5000, "per": "5m"}}
			for k, v := range extra {
				c[k] = v
			}
			cfg, _ := json.Marshal(c)
			return mastodon.New().Configure(ctx, sdk.ConfigureRequest{ChannelID: "masto", Config: cfg,
				Secrets: map[string]string{mastodon.SecretToken: acct.Token}, StateDir: stateDir, Logger: nodetest.Logger(name)})
		}})
	n.Tune = func(o *node.Options) { o.BoardPollInterval = time.Second }
	return n
}

// circleOverGoToSocial starts two fresh nodes whose only common ground is
// their accounts on the GoToSocial server, and joins bob to alice's circle
// through it.
func circleOverGoToSocial(t testing.TB, srv *gotosocial.Server, ua, ub gotosocial.Account, extra map[string]any) (alice, bob *nodetest.Node, circleID string) {
	root := t.TempDir()
	alice = gtsNode(t, "alice", filepath.Join(root, "a"), srv.URL, ua, []string{ub.Username}, extra)
	bob = gtsNode(t, "bob", filepath.Join(root, "b"), srv.URL, ub, []string{ua.Username}, extra)
	alice.Start()
	bob.Start()
	return alice, bob, nodetest.Circle(t, alice, bob)
}

// TestNodesOverGoToSocial: two fresh nodes sharing only their accounts on a
// real server (GoToSocial, 500 characters per post) join one circle through
// direct posts, connect directly; while bob is offline alice sends a short
// message and a 4 KB one, which travel as fragments in posts and arrive
// whole, each once.
func TestNodesOverGoToSocial(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two libp2p nodes")
	}
	srv := gotosocial.Need(t)
	accts := srv.NewAccounts(t, "alice", "bob")
	a, b, circleID := circleOverGoToSocial(t, srv, accts[0], accts[1], nil)
	defer a.Stop()
	if got, want := a.Ch.Capabilities().MaxPayload, 500-len("@"+accts[1].Username+" "); got != want {
		t.Fatalf("alice's max payload %d, want %d", got, want)
	}
	testenv.WaitFor(t, "alice and bob connected directly", time.Minute, func() bool { return nodetest.Connected(a, b) })
	ctx := context.Background()
	if _, err := a.N.Send(ctx, api.SendRequest{Circle: circleID, Text: "hello bob"}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "bob got the broadcast", 30*time.Second, func() bool { return nodetest.Texts(t, b.N)["hello bob"] == 1 })

	bobID := b.N.ID()
	b.Stop()
	big := strings.Repeat("four kilobytes of text, ", 200)[:4*1024]
	published := a.Published()
	for _, text := range []string{"while you were out", big} {
		if _, err := a.N.Send(ctx, api.SendRequest{Circle: circleID, To: []string{bobID.String()}, Text: text}); err != nil {
			t.Fatal(err)
		}
	}
	// 4 KB at ~360 envelope bytes per post is over 10 posts.
	testenv.WaitFor(t, "the fragments posted", 2*time.Minute, func() bool { return a.Published()-published > 10 })
	b.Start()
	defer b.Stop()
	testenv.WaitFor(t, "bob got both offline messages", 2*time.Minute, func() bool {
		got := nodetest.Texts(t, b.N)
		return got["while you were out"] >= 1 && got[big] >= 1
	})
	testenv.WaitFor(t, "alice and bob reconnected", time.Minute, func() bool { return nodetest.Connected(a, b) })
	time.Sleep(3 * time.Second) // let the live retry and the channel copy both land
	got := nodetest.Texts(t, b.N)
	if got["while you were out"] != 1 || got[big] != 1 || got["hello bob"] != 1 {
		t.Fatalf("bob's inbox: %d × short, %d × 4 KB, %d × hello; want each once", got["while you were out"], got[big], got["hello bob"])
	}
	if h := b.Ch.(sdk.Healther).Health(ctx); h.State != sdk.HealthOK || h.Counters["stream_connects"] < 1 {
		t.Errorf("bob's channel: %s %q %v; want ok, streaming", h.State, h.Message, h.Counters)
	}
}
