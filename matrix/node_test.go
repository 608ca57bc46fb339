package matrix

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/core/identity"
	"github.com/remora-p2p/remora/core/node"
	"github.com/remora-p2p/remora/core/store"
	"github.com/remora-p2p/remora/sdk"
)

// matrixNode is a core node whose only channel is its own account in the
// shared Matrix room.
type matrixNode struct {
	t      testing.TB
	name   string
	state  string
	hs     homeserver
	u      user
	room   id.RoomID
	n      *node.Node
	db     *store.DB
	ch     sdk.Channel
	cancel context.CancelFunc
	done   chan error
}

func (m *matrixNode) start() {
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
	ch, err := m.hs.open(ctx, t, m.u, m.room, filepath.Join(m.state, "adapter"), nil)
	if err != nil {
		t.Fatal(err)
	}
	m.ch = ch
	m.n, err = node.New(ctx, node.Options{
		Keyring: k, Store: m.db, Logger: testLogger(t).With("node", m.name), Name: m.name,
		ListenAddrs:       []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"},
		Channels:          []node.Channel{{Name: "matrix", ID: string(m.room), Adapter: "matrix", Impl: ch}},
		PresenceInterval:  time.Second,
		BoardPollInterval: 200 * time.Millisecond,
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

func (m *matrixNode) stop() {
	m.cancel()
	if err := <-m.done; err != nil {
		m.t.Errorf("%s: Run: %v", m.name, err)
	}
	m.n.Close()
	m.ch.Close()
	m.db.Close()
}

func (m *matrixNode) published() int64 {
	chs, err := m.n.Channels(context.Background())
	if err != nil || len(chs) == 0 {
		return 0
	}
	return chs[0].Counters["published"]
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

func connected(a, b *matrixNode) bool {
	return a.n.Transport().PathTo(b.n.ID()).Live() || b.n.Transport().PathTo(a.n.ID()).Live()
}

// circleOverMatrix starts two fresh nodes whose only common ground is a
// Matrix room (each with its own account) and joins bob to alice's circle
// through it.
func circleOverMatrix(t testing.TB) (alice, bob *matrixNode, circleID string) {
	hs := needHomeserver(t)
	ua, ub := hs.register(t), hs.register(t)
	room := createRoom(t, ua, []user{ub}, &event.PowerLevelsEventContent{
		Users:  map[id.UserID]int{ua.id: 100},
		Events: map[string]int{BoardType: 0},
	})
	return circleIn(t, hs, ua, ub, room)
}

// circleIn starts fresh nodes for ua and ub (both invited to room) and
// joins bob to alice's new circle through the room.
func circleIn(t testing.TB, hs homeserver, ua, ub user, room id.RoomID) (alice, bob *matrixNode, circleID string) {
	root := t.TempDir()
	alice = &matrixNode{t: t, name: "alice", state: filepath.Join(root, "a"), hs: hs, u: ua, room: room}
	bob = &matrixNode{t: t, name: "bob", state: filepath.Join(root, "b"), hs: hs, u: ub, room: room}
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
		t.Fatalf("bob joining through the Matrix room: %v", err)
	}
	return alice, bob, ci.ID
}

// TestNodesOverMatrixRoom: two fresh nodes sharing only a Matrix room join
// one circle through it, exchange presence, connect directly, and a direct
// message sent while the recipient is offline waits in the room and is
// delivered once when it returns.
func TestNodesOverMatrixRoom(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two libp2p nodes")
	}
	a, b, circleID := circleOverMatrix(t)
	waitUntil(t, "alice and bob connected directly", time.Minute, func() bool { return connected(a, b) })

	ctx := context.Background()
	if _, err := a.n.Send(ctx, api.SendRequest{Circle: circleID, Text: "hello bob"}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "bob got the broadcast", 30*time.Second, func() bool { return inboxTexts(t, b.n)["hello bob"] == 1 })

	bobID := b.n.ID()
	b.stop()
	before := a.published()
	if _, err := a.n.Send(ctx, api.SendRequest{Circle: circleID, To: []string{bobID.String()}, Text: "while you were out"}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the message posted to the room", time.Minute, func() bool { return a.published() > before })
	b.start()
	defer b.stop()
	defer a.stop()
	waitUntil(t, "bob got the offline message", time.Minute, func() bool { return inboxTexts(t, b.n)["while you were out"] >= 1 })
	waitUntil(t, "alice and bob reconnected", time.Minute, func() bool { return connected(a, b) })
	time.Sleep(3 * time.Second) // let the live retry and the room copy both land
	got := inboxTexts(t, b.n)
	if got["while you were out"] != 1 || got["hello bob"] != 1 {
		t.Fatalf("bob's inbox %v: want each message exactly once", got)
	}
}
