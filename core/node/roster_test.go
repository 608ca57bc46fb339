package node

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/core/circle"
	"github.com/remora-p2p/remora/core/envelope"
	"github.com/remora-p2p/remora/testenv"
)

func circleOfNode(t *testing.T, tn *testNode, id string) *circle.Circle {
	t.Helper()
	cid, err := circle.ParseID(id)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := tn.n.circleOf(cid)
	if !ok {
		t.Fatalf("%s does not hold circle %s", tn.name, id)
	}
	return c
}

// twoMembers makes a create a circle and b join it, and returns the
// circle as each holds it.
func twoMembers(t *testing.T, a, b *testNode) (api.Circle, *circle.Circle, *circle.Circle) {
	t.Helper()
	ci, err := a.n.CreateCircle(context.Background(), api.CreateCircleRequest{Name: "friends"})
	if err != nil {
		t.Fatal(err)
	}
	join(t, a, b, ci.ID)
	return ci, circleOfNode(t, a, ci.ID), circleOfNode(t, b, ci.ID)
}

// TestRosterOpBeforeParent: a roster operation that reaches a member before
// its parent (the parent travels another way, or was lost) waits, the
// member asks the sender for the parent, and both apply. Before, the node
// acknowledged the operation and dropped it for good: the member's roster
// diverged from everyone else's.
func TestRosterOpBeforeParent(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p nodes")
	}
	nodes := startDirNodes(t, t.TempDir(), 0, nil, "alice", "bob")
	a, b := nodes[0], nodes[1]
	_, ca, cb := twoMembers(t, a, b)
	// Alice signs two operations; only the second is sent to bob.
	u1, err := ca.SetChannel(circle.Channel{ID: "c1", Kind: "dir", Address: "/srv/one"})
	if err != nil {
		t.Fatal(err)
	}
	u2, err := ca.SetChannel(circle.Channel{ID: "c2", Kind: "dir", Address: "/srv/two"})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.n.saveCircle(ca); err != nil {
		t.Fatal(err)
	}
	if _, err := a.n.enqueue(ca.ID(), []peer.ID{b.n.ID()}, envelope.KindRoster, u2.Op.Raw(), 0, nil); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "bob holds both operations", 60*time.Second, func() bool {
		return cb.HasOp(u1.Op.Hash()) && cb.HasOp(u2.Op.Hash())
	})
	if got, want := cb.Roster().Heads, ca.Roster().Heads; len(got) != 1 || got[0] != want[0] {
		t.Fatalf("bob's heads %v, alice's %v", got, want)
	}
	if len(cb.Roster().Channels()) != 2 {
		t.Fatalf("bob's channels %v", cb.Roster().Channels())
	}
	if b.n.Counters()["roster_ops_waiting"] == 0 {
		t.Fatal("the operation did not wait for its parent: the test did not test that")
	}
}

// testClock is a shared test clock that can jump.
type testClock struct{ offset atomic.Int64 }

func (c *testClock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

func (c *testClock) jump(d time.Duration) { c.offset.Add(int64(d)) }

// TestDirectAfterSixtyDays: with the clock moved 60 days forward, box
// prekeys rotate, each member publishes its new prekey in the roster, and
// direct messages keep opening both ways. Before, the roster kept the
// join-time prekeys, whose private halves the rotation deleted: nothing
// sealed to them opened any more.
func TestDirectAfterSixtyDays(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p nodes")
	}
	root := t.TempDir()
	shared := filepath.Join(root, "shared")
	os.MkdirAll(shared, 0o755)
	clk := &testClock{}
	var nodes []*testNode
	for _, name := range []string{"alice", "bob"} {
		tn := &testNode{t: t, name: name, state: filepath.Join(root, name), shared: shared, now: clk.Now}
		tn.start()
		t.Cleanup(tn.stop)
		nodes = append(nodes, tn)
	}
	a, b := nodes[0], nodes[1]
	ctx := context.Background()
	ci, ca, cb := twoMembers(t, a, b)
	direct := func(from, to *testNode, text string) {
		t.Helper()
		if _, err := from.n.Send(ctx, api.SendRequest{Circle: ci.ID, To: []string{to.n.ID().String()}, Text: text}); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, to.name+" got "+text, 60*time.Second, func() bool { return texts(inbox(t, to.n))[text] == 1 })
	}
	direct(a, b, "day 0, to bob")
	direct(b, a, "day 0, to alice")

	clk.jump(60 * 24 * time.Hour)
	// What the maintenance loop does every minute: rotate and publish.
	a.n.rotatePrekeys()
	b.n.rotatePrekeys()
	// Sealed to the old or the new prekey, depending on what arrived
	// first: both open.
	direct(a, b, "day 60, to bob")
	direct(b, a, "day 60, to alice")
	waitPrekeys := func() {
		for _, pair := range [][2]*testNode{{a, b}, {b, a}} {
			who, seen := pair[0], pair[1]
			c := circleOfNode(t, seen, ci.ID)
			testenv.WaitFor(t, seen.name+" holds "+who.name+"'s new prekey", 60*time.Second, func() bool {
				m, ok := c.Roster().Member(who.n.ID())
				return ok && m.Prekey.Public.Equal(who.n.opts.Keyring.Current().Public)
			})
		}
	}
	waitPrekeys()
	if ca.Roster().Epoch != cb.Roster().Epoch {
		t.Fatal("a prekey operation changed the epoch")
	}
	// Two weeks on, the join-time private halves are gone: only the
	// published prekeys open anything.
	clk.jump(15 * 24 * time.Hour)
	a.n.rotatePrekeys()
	b.n.rotatePrekeys()
	for _, n := range []*testNode{a, b} {
		if len(n.n.opts.Keyring.BoxKeys()) != 2 {
			t.Fatalf("%s holds %d box keys, want the two newest", n.name, len(n.n.opts.Keyring.BoxKeys()))
		}
	}
	direct(a, b, "day 75, to bob")
	direct(b, a, "day 75, to alice")
	waitPrekeys()
	// doctor's view: the roster holds this device's current prekey.
	for _, n := range []*testNode{a, b} {
		st, err := n.n.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r := st.Circles[0].Roster; r == nil || !r.Member || !r.PrekeyCurrent || r.Waiting != 0 || r.Ops < 4 {
			t.Fatalf("%s's status shows the roster as %+v", n.name, r)
		}
	}
}
