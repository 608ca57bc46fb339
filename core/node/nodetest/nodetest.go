// Package nodetest runs real core nodes in tests: a node with its own state
// folder and one channel, started, stopped and restarted like a daemon. The
// adapters' end-to-end tests ("two fresh nodes whose only common ground is
// the channel") build on it.
package nodetest

import (
	"context"
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

// Channel says how a node opens its one channel.
type Channel struct {
	Name, ID, Adapter string
	// Open configures the channel; stateDir is the adapter's own folder.
	Open func(ctx context.Context, stateDir string) (sdk.Channel, error)
}

// Node is one running node.
type Node struct {
	T       testing.TB
	Name    string
	State   string
	Channel Channel
	// Tune, if set, adjusts the node's options before each start.
	Tune func(*node.Options)

	N  *node.Node
	DB *store.DB
	Ch sdk.Channel

	cancel context.CancelFunc
	done   chan error
}

// Logger logs to stderr when REMORA_TEST_LOG is set, else nowhere.
func Logger(name string) *slog.Logger {
	if os.Getenv("REMORA_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", name)
	}
	return slog.New(slog.DiscardHandler)
}

// New returns a node (not started) whose state lives in state.
func New(t testing.TB, name, state string, ch Channel) *Node {
	return &Node{T: t, Name: name, State: state, Channel: ch}
}

// Start opens the node's keys, store and channel, and runs it. Calling it
// again after Stop is a restart with the same identity and state.
func (n *Node) Start() {
	t := n.T
	t.Helper()
	ctx := context.Background()
	k, err := identity.Open(filepath.Join(n.State, "keys"), identity.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n.DB, err = store.Open(filepath.Join(n.State, "remora.db"), store.Options{}); err != nil {
		t.Fatal(err)
	}
	if n.Ch, err = n.Channel.Open(ctx, filepath.Join(n.State, "adapter")); err != nil {
		t.Fatalf("%s: open channel: %v", n.Name, err)
	}
	opts := node.Options{
		Keyring: k, Store: n.DB, Logger: Logger(n.Name), Name: n.Name,
		ListenAddrs:       []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"},
		Channels:          []node.Channel{{Name: n.Channel.Name, ID: n.Channel.ID, Adapter: n.Channel.Adapter, Impl: n.Ch}},
		PresenceInterval:  time.Second,
		BoardPollInterval: 200 * time.Millisecond,
		LiveTimeout:       2 * time.Second,
		AckDelay:          50 * time.Millisecond,
	}
	if n.Tune != nil {
		n.Tune(&opts)
	}
	if n.N, err = node.New(ctx, opts); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	n.cancel, n.done = cancel, make(chan error, 1)
	go func() { n.done <- n.N.Run(rctx) }()
}

// Stop stops the node and closes its channel and store.
func (n *Node) Stop() {
	if n.cancel == nil {
		return
	}
	n.cancel()
	if err := <-n.done; err != nil {
		n.T.Errorf("%s: Run: %v", n.Name, err)
	}
	n.cancel = nil
	n.Ch.Close()
	n.DB.Close()
}

// MessagesPublished is the channel's messages_published counter: chat
// messages every envelope of which the channel took (published counts
// presence records, acks and key messages too).
func (n *Node) MessagesPublished() int64 {
	chs, err := n.N.Channels(context.Background())
	if err != nil || len(chs) == 0 {
		return 0
	}
	return chs[0].Counters["messages_published"]
}

// Texts counts the texts in n's inbox.
func Texts(t testing.TB, n *node.Node) map[string]int {
	t.Helper()
	out := map[string]int{}
	after := int64(0)
	for {
		msgs, err := n.Messages(context.Background(), after, 500)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 {
			return out
		}
		for _, m := range msgs {
			out[m.Text]++
		}
		after = msgs[len(msgs)-1].Seq
	}
}

// Connected reports whether a and b have a live path either way.
func Connected(a, b *Node) bool {
	return a.N.Transport().PathTo(b.N.ID()).Live() || b.N.Transport().PathTo(a.N.ID()).Live()
}

// Circle creates a circle on inviter and joins each joiner to it through the
// channel; it returns the circle ID.
func Circle(t testing.TB, inviter *Node, joiners ...*Node) string {
	t.Helper()
	ctx := context.Background()
	ci, err := inviter.N.CreateCircle(ctx, api.CreateCircleRequest{Name: "friends"})
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range joiners {
		// In person: these tests are about the channel, not the approval
		// gate (core/node and cmd/remora test that).
		inv, err := inviter.N.Invite(ctx, api.InviteRequest{Circle: ci.ID, InPerson: true})
		if err != nil {
			t.Fatal(err)
		}
		jctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		c, _, err := j.N.JoinCircle(jctx, inv.Invite)
		cancel()
		if err != nil {
			t.Fatalf("%s joining: %v", j.Name, err)
		}
		if c.ID().String() != ci.ID {
			t.Fatalf("%s joined %s, want %s", j.Name, c.ID(), ci.ID)
		}
	}
	return ci.ID
}
