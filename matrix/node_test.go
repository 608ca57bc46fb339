package matrix

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/core/node/nodetest"
	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/testenv"
)

// roomNode is a core node whose only channel is its own account in the
// shared Matrix room.
func roomNode(t testing.TB, name, state string, hs homeserver, u user, room id.RoomID) *nodetest.Node {
	return nodetest.New(t, name, state, nodetest.Channel{Name: "matrix", ID: string(room), Adapter: "matrix",
		Open: func(ctx context.Context, stateDir string) (sdk.Channel, error) {
			ch, err := hs.open(ctx, t, u, room, stateDir, nil)
			if err != nil {
				return nil, err // a nil *channel must not become a non-nil interface
			}
			return ch, nil
		}})
}

// circleOverMatrix starts two fresh nodes whose only common ground is a
// Matrix room (each with its own account) and joins bob to alice's circle
// through it.
func circleOverMatrix(t testing.TB) (alice, bob *nodetest.Node, circleID string) {
	hs := needHomeserver(t)
	ua, ub := hs.register(t), hs.register(t)
	room := createRoom(t, ua, []user{ub}, &event.PowerLevelsEventContent{
		Users:  map[id.UserID]int{ua.id: 100},
		Events: map[string]int{boardEvents: 0},
	})
	return circleIn(t, hs, ua, ub, room)
}

// circleIn starts fresh nodes for ua and ub (both invited to room) and
// joins bob to alice's new circle through the room.
func circleIn(t testing.TB, hs homeserver, ua, ub user, room id.RoomID) (alice, bob *nodetest.Node, circleID string) {
	root := t.TempDir()
	alice = roomNode(t, "alice", filepath.Join(root, "a"), hs, ua, room)
	bob = roomNode(t, "bob", filepath.Join(root, "b"), hs, ub, room)
	alice.Start()
	bob.Start()
	return alice, bob, nodetest.Circle(t, alice, bob)
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
	testenv.WaitFor(t, "alice and bob connected directly", time.Minute, func() bool { return nodetest.Connected(a, b) })

	ctx := context.Background()
	if _, err := a.N.Send(ctx, api.SendRequest{Circle: circleID, Text: "hello bob"}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "bob got the broadcast", 30*time.Second, func() bool { return nodetest.Texts(t, b.N)["hello bob"] == 1 })

	bobID := b.N.ID()
	b.Stop()
	before := a.MessagesPublished()
	if _, err := a.N.Send(ctx, api.SendRequest{Circle: circleID, To: []string{bobID.String()}, Text: "while you were out"}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the message posted to the room", time.Minute, func() bool { return a.MessagesPublished() > before })
	b.Start()
	defer b.Stop()
	defer a.Stop()
	testenv.WaitFor(t, "bob got the offline message", time.Minute, func() bool { return nodetest.Texts(t, b.N)["while you were out"] >= 1 })
	testenv.WaitFor(t, "alice and bob reconnected", time.Minute, func() bool { return nodetest.Connected(a, b) })
	time.Sleep(3 * time.Second) // let the live retry and the room copy both land
	got := nodetest.Texts(t, b.N)
	if got["while you were out"] != 1 || got["hello bob"] != 1 {
		t.Fatalf("bob's inbox %v: want each message exactly once", got)
	}
}
