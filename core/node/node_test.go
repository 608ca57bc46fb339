package node

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/core/circle"
	"github.com/remora-p2p/remora/core/identity"
	"github.com/remora-p2p/remora/core/store"
	"github.com/remora-p2p/remora/dir"
	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/testenv"
)

// testNode is one node with its own state folder, sharing a dir channel.
type testNode struct {
	t      testing.TB
	name   string
	state  string
	shared string
	n      *Node
	db     *store.DB
	ch     sdk.Channel
	cancel context.CancelFunc
	done   chan error
	// configure opens the channel (default: a dir channel on shared).
	configure func(ctx context.Context) (sdk.Channel, error)
	// idle: the node is made but not run (no loop acts behind the test).
	idle bool
	// tune adjusts the node's options (optional).
	tune func(*Options)
	// now is the clock of the node and its keyring (optional).
	now func() time.Time
}

func logger(t testing.TB, name string) *slog.Logger {
	if os.Getenv("REMORA_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", name)
	}
	return slog.New(slog.DiscardHandler)
}

func startNode(t *testing.T, name, state, shared string) *testNode {
	t.Helper()
	tn := &testNode{t: t, name: name, state: state, shared: shared}
	tn.start()
	return tn
}

// dirChannel opens the dir channel "shared" on folder shared (polled every
// 50 ms), its state under state/adapter; maxPayload 0 keeps the default.
func dirChannel(ctx context.Context, shared, state string, maxPayload int, log *slog.Logger) (sdk.Channel, error) {
	cfg := map[string]any{"path": shared, "poll_interval": "50ms"}
	if maxPayload > 0 {
		cfg["max_payload"] = maxPayload
	}
	raw, _ := json.Marshal(cfg)
	return dir.New().Configure(ctx, sdk.ConfigureRequest{ChannelID: "shared", Config: raw,
		StateDir: filepath.Join(state, "adapter"), Logger: log})
}

// testOptions opens the keyring and store in state and gives the options a
// test node starts from: channel ch, loopback listeners, fast timings.
func testOptions(name, state string, ch sdk.Channel, log *slog.Logger, now func() time.Time) (Options, *store.DB, error) {
	k, err := identity.Open(filepath.Join(state, "keys"), identity.Options{Now: now})
	if err != nil {
		return Options{}, nil, err
	}
	db, err := store.Open(filepath.Join(state, "remora.db"), store.Options{})
	if err != nil {
		return Options{}, nil, err
	}
	return Options{
		Keyring: k, Store: db, Logger: log, Name: name,
		ListenAddrs:       []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"},
		Channels:          []Channel{{Name: "shared", Adapter: "dir", Impl: ch}},
		PresenceInterval:  time.Second,
		BoardPollInterval: 100 * time.Millisecond,
		LiveTimeout:       2 * time.Second,
		AckDelay:          50 * time.Millisecond,
		Now:               now,
	}, db, nil
}

func (tn *testNode) start() {
	t := tn.t
	t.Helper()
	ctx := context.Background()
	if tn.configure == nil {
		tn.configure = func(ctx context.Context) (sdk.Channel, error) {
			return dirChannel(ctx, tn.shared, tn.state, 0, logger(t, tn.name))
		}
	}
	ch, err := tn.configure(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tn.ch = ch
	opts, db, err := testOptions(tn.name, tn.state, ch, logger(t, tn.name), tn.now)
	if err != nil {
		t.Fatal(err)
	}
	tn.db = db
	if tn.tune != nil {
		tn.tune(&opts)
	}
	tn.n, err = New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	tn.done = make(chan error, 1)
	if tn.idle {
		tn.cancel = func() { tn.done <- tn.n.Close() }
		return
	}
	rctx, cancel := context.WithCancel(ctx)
	tn.cancel = cancel
	go func() { tn.done <- tn.n.Run(rctx) }()
}

// stop stops the node; stopping a stopped node does nothing (a test may
// stop a node its cleanup stops again).
func (tn *testNode) stop() {
	if tn.done == nil {
		return
	}
	tn.cancel()
	if err := <-tn.done; err != nil {
		tn.t.Errorf("%s: Run: %v", tn.name, err)
	}
	tn.done = nil
	tn.ch.Close()
	tn.db.Close()
}

func inbox(t testing.TB, n *Node) []api.Message {
	t.Helper()
	msgs, err := n.Messages(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

func texts(msgs []api.Message) map[string]int {
	out := map[string]int{}
	for _, m := range msgs {
		out[m.Text]++
	}
	return out
}

// join makes joiner a member of inviter's circle through the shared channel.
func join(t testing.TB, inviter, joiner *testNode, circleID string) {
	t.Helper()
	ctx := context.Background()
	inv, err := inviter.n.Invite(ctx, api.InviteRequest{Circle: circleID, InPerson: true})
	if err != nil {
		t.Fatal(err)
	}
	// A deadline, not a pace: under -race on a loaded 2-core machine the
	// answer over the folder took more than 30 s (TestPEXOnly, 2 of ~40).
	jctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	c, _, err := joiner.n.JoinCircle(jctx, inv.Invite)
	if err != nil {
		t.Fatalf("%s joining: %v", joiner.name, err)
	}
	if c.ID().String() != circleID {
		t.Fatalf("joined %s, want %s", c.ID(), circleID)
	}
}

// newCircle creates a circle named name on nodes[0] and joins the other
// nodes to it; it returns the circle's ID as the API spells it and parsed.
func newCircle(t *testing.T, name string, nodes ...*testNode) (string, circle.ID) {
	t.Helper()
	ci, err := nodes[0].n.CreateCircle(context.Background(), api.CreateCircleRequest{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range nodes[1:] {
		join(t, nodes[0], j, ci.ID)
	}
	return ci.ID, mustParse(t, ci.ID)
}

func TestThreeNodesOverDirChannel(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three libp2p nodes")
	}
	root := t.TempDir()
	shared := filepath.Join(root, "shared")
	os.MkdirAll(shared, 0o755)
	a := startNode(t, "alice", filepath.Join(root, "a"), shared)
	b := startNode(t, "bob", filepath.Join(root, "b"), shared)
	c := startNode(t, "carol", filepath.Join(root, "c"), shared)
	defer func() {
		for _, n := range []*testNode{a, b} {
			n.stop()
		}
	}()
	ctx := context.Background()
	ci, err := a.n.CreateCircle(ctx, api.CreateCircleRequest{Name: "friends"})
	if err != nil {
		t.Fatal(err)
	}
	join(t, a, b, ci.ID)
	join(t, a, c, ci.ID)

	// Rendezvous: presence through the folder, then direct connections.
	for _, pair := range [][2]*testNode{{a, b}, {a, c}, {b, c}} {
		x, y := pair[0], pair[1]
		testenv.WaitFor(t, fmt.Sprintf("%s and %s connected directly", x.name, y.name), 60*time.Second, func() bool {
			return x.n.tr.PathTo(y.n.ID()).Live() || y.n.tr.PathTo(x.n.ID()).Live()
		})
	}

	// A broadcast reaches both others once.
	if _, err := a.n.Send(ctx, api.SendRequest{Circle: ci.ID, Text: "hello all"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*testNode{b, c} {
		testenv.WaitFor(t, n.name+" got the broadcast", 30*time.Second, func() bool { return texts(inbox(t, n.n))["hello all"] == 1 })
	}

	// Carol goes offline; a direct message to her waits in the channel.
	cID := c.n.ID()
	c.stop()
	if _, err := b.n.Send(ctx, api.SendRequest{Circle: ci.ID, To: []string{cID.String()}, Text: "while you were out"}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the message posted to the channel", 30*time.Second, func() bool {
		b.n.mu.Lock()
		defer b.n.mu.Unlock()
		for _, e := range b.n.outbox {
			if e.Kind == 1 && len(e.Channels) > 0 {
				return true
			}
		}
		return false
	})
	c.start()
	defer c.stop()
	if c.n.ID() != cID {
		t.Fatalf("carol came back as %s, want %s", c.n.ID(), cID)
	}
	testenv.WaitFor(t, "carol got the offline message", 60*time.Second, func() bool { return texts(inbox(t, c.n))["while you were out"] >= 1 })
	// Let every path (channel copy, live retry) settle, then count.
	testenv.WaitFor(t, "bob's outbox drained", 60*time.Second, func() bool {
		b.n.mu.Lock()
		defer b.n.mu.Unlock()
		for _, e := range b.n.outbox {
			if e.Kind == 1 {
				return false
			}
		}
		return true
	})
	got := texts(inbox(t, c.n))
	if got["while you were out"] != 1 || got["hello all"] != 1 {
		t.Fatalf("carol's inbox %v: want each message exactly once", got)
	}
}

// startDirNodes starts nodes named names sharing a dir channel in root;
// maxPayload (0: default) caps the channel's items, and wrap (nil: none)
// changes the channel the node sees.
func startDirNodes(t *testing.T, root string, maxPayload int, wrap func(sdk.Channel) sdk.Channel, names ...string) []*testNode {
	t.Helper()
	return startDirNodesWith(t, root, maxPayload, wrap, nil, names...)
}

// startDirNodesTuned is startDirNodes with tune applied to each node's options.
func startDirNodesTuned(t *testing.T, root string, tune func(*Options), names ...string) []*testNode {
	t.Helper()
	return startDirNodesWith(t, root, 0, nil, tune, names...)
}

func startDirNodesWith(t *testing.T, root string, maxPayload int, wrap func(sdk.Channel) sdk.Channel, tune func(*Options), names ...string) []*testNode {
	t.Helper()
	var nodes []*testNode
	for _, name := range names {
		tn := newDirNode(t, root, maxPayload, wrap, tune, name)
		tn.start()
		t.Cleanup(tn.stop)
		nodes = append(nodes, tn)
	}
	return nodes
}

// startIdleDirNode makes a node on a dir channel without running it: no
// loop retries, expires or publishes anything behind a test's back.
func startIdleDirNode(t *testing.T, tune func(*Options)) *testNode {
	t.Helper()
	tn := newDirNode(t, t.TempDir(), 0, nil, tune, "alice")
	tn.idle = true
	tn.start()
	t.Cleanup(tn.stop)
	return tn
}

// newDirNode prepares (does not start) a node on the dir channel in root/shared.
func newDirNode(t *testing.T, root string, maxPayload int, wrap func(sdk.Channel) sdk.Channel, tune func(*Options), name string) *testNode {
	shared := filepath.Join(root, "shared")
	os.MkdirAll(shared, 0o755)
	tn := &testNode{t: t, name: name, state: filepath.Join(root, name), shared: shared, tune: tune}
	if tune == nil {
		tn.tune = func(*Options) {}
	}
	tn.configure = func(ctx context.Context) (sdk.Channel, error) {
		ch, err := dirChannel(ctx, shared, tn.state, maxPayload, logger(t, name))
		if err != nil || wrap == nil {
			return ch, err
		}
		return wrap(ch), nil
	}
	return tn
}
