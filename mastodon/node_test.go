package mastodon_test

import (
	"bytes"
	"context"
	"crypto/rand"
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

// accountNode is a core node whose only channel is its own account
// (token) on the server, addressing the other members' accounts. The
// declared rate limit is raised so that presence every second does not make
// a node test a rate-limit test (TestRateLimit, TestGoToSocialRateLimit
// are those; the GoToSocial test server exempts loopback).
func accountNode(t testing.TB, name, state, server, token string, others []string, cfg map[string]any) *nodetest.Node {
	n := nodetest.New(t, name, state, nodetest.Channel{Name: "masto", ID: "masto", Adapter: "mastodon",
		Open: func(ctx context.Context, stateDir string) (sdk.Channel, error) {
			c := map[string]any{"server": server, "accounts": others,
				"rate_limit": map[string]any{"requests": 5000, "per": "5m"}}
			for k, v := range cfg {
				c[k] = v
			}
			raw, _ := json.Marshal(c)
			return mastodon.New().Configure(ctx, sdk.ConfigureRequest{ChannelID: "masto", Config: raw,
				Secrets: map[string]string{mastodon.SecretToken: token}, StateDir: stateDir, Logger: nodetest.Logger(name)})
		}})
	n.Tune = func(o *node.Options) { o.BoardPollInterval = time.Second }
	return n
}

// memberPair starts two fresh nodes, alice and bob, whose only common
// ground is their accounts (tokens, usernames) on server, and joins bob to
// alice's circle through it (the join frames split into posts that fit the
// limit).
func memberPair(t testing.TB, server string, tokens, names [2]string, cfg map[string]any) (alice, bob *nodetest.Node, circleID string) {
	root := t.TempDir()
	alice = accountNode(t, "alice", filepath.Join(root, "a"), server, tokens[0], []string{names[1]}, cfg)
	bob = accountNode(t, "bob", filepath.Join(root, "b"), server, tokens[1], []string{names[0]}, cfg)
	alice.Start()
	bob.Start()
	return alice, bob, nodetest.Circle(t, alice, bob)
}

func channelCounter(n *nodetest.Node, k string) int64 {
	chs, err := n.N.Channels(context.Background())
	if err != nil || len(chs) == 0 {
		return 0
	}
	return chs[0].Counters[k]
}

// circleOverMastodon is memberPair on a fresh fake server.
func circleOverMastodon(t testing.TB, opts mastodontest.Options) (srv *mastodontest.Server, alice, bob *nodetest.Node, circleID string) {
	srv = mastodontest.New(opts)
	t.Cleanup(srv.Close)
	ua, ub := srv.AddAccount("alice"), srv.AddAccount("bob")
	alice, bob, circleID = memberPair(t, srv.URL, [2]string{ua.Token, ub.Token}, [2]string{"alice", "bob"}, map[string]any{"poll_interval": "1s"})
	return srv, alice, bob, circleID
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
	armor := envelope.NewArmor("masto") // the channel's: these blocks are found, then dropped
	srv.Post("alice", "@bob "+armor.Encode(forged), "direct")
	srv.Post("alice", "@bob "+armor.Encode(bytes.Repeat([]byte{envelope.Version}, 150)), "direct")
	srv.Post("mallory", "@bob "+armor.Encode(forged), "direct")
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

// circleOverGoToSocial is memberPair on the GoToSocial server, with the
// adapter's defaults (streaming; polling every 30 s only as the fallback).
func circleOverGoToSocial(t testing.TB, srv *gotosocial.Server, ua, ub gotosocial.Account) (alice, bob *nodetest.Node, circleID string) {
	return memberPair(t, srv.URL, [2]string{ua.Token, ub.Token}, [2]string{ua.Username, ub.Username}, nil)
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
	a, b, circleID := circleOverGoToSocial(t, srv, accts[0], accts[1])
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
	published := a.MessagesPublished()
	for _, text := range []string{"while you were out", big} {
		if _, err := a.N.Send(ctx, api.SendRequest{Circle: circleID, To: []string{bobID.String()}, Text: text}); err != nil {
			t.Fatal(err)
		}
	}
	// Both messages, every fragment of the 4 KB one (over 10 posts at ~360
	// envelope bytes each).
	testenv.WaitFor(t, "both messages posted", 2*time.Minute, func() bool { return a.MessagesPublished()-published >= 2 })
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
