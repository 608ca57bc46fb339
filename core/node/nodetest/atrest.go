package nodetest

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/remora-p2p/remora/core/circle"
	"github.com/remora-p2p/remora/core/identity"
	"github.com/remora-p2p/remora/core/store"
)

// FormCircleAtRest makes a circle of nodes that have not started: the first
// creates it and admits every other one through the circle's own join
// protocol (an in-person invite, the sealed request, the welcome), and
// every member's sender key of the final epoch is handed to every other
// one, all in memory; each node's circle state is then written to its
// store, as a node that joined and took every hand-out would have saved it.
//
// It is for benchmarks that measure a formed circle (presence after a
// restart of all) at sizes whose forming over the network would take
// hours in one process: FormCircle costs each join a hand-out from every
// member to every other one. The nodes start with no peer cache, like
// members who have never been online together.
func FormCircleAtRest(t testing.TB, nodes []*Node) string {
	t.Helper()
	n := len(nodes)
	keys := make([]*identity.Keyring, n)
	for i, nd := range nodes {
		k, err := identity.Open(filepath.Join(nd.State, "keys"), identity.Options{})
		if err != nil {
			t.Fatalf("%s: keys: %v", nd.Name, err)
		}
		keys[i] = k
	}
	opts := circle.Options{}
	admin, _, err := circle.Create(keys[0], "friends", nodes[0].Name, false, opts)
	if err != nil {
		t.Fatal(err)
	}
	// Every join is admitted first (the admin signs each addition), so
	// that each newcomer's welcome, made afterwards, carries the whole
	// log: members enter the final epoch at once instead of walking
	// through one epoch per later join.
	reqs := make([]*circle.JoinRequest, n)
	pendings := make([]*circle.PendingJoin, n)
	for i := 1; i < n; i++ {
		inv, err := admin.Invite(circle.InviteOptions{TTL: time.Hour, InPerson: true})
		if err != nil {
			t.Fatal(err)
		}
		sealed, p, err := circle.RequestJoin(keys[i], inv, nodes[i].Name, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		req, err := admin.OpenJoin(sealed)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := admin.HoldJoin(req); err != nil || !ok {
			t.Fatalf("%s: in-person join not approved at once (%v)", nodes[i].Name, err)
		}
		if _, _, err := admin.Welcome(req); err != nil {
			t.Fatal(err)
		}
		reqs[i], pendings[i] = req, p
	}
	final := admin.Epoch()
	circles := map[peer.ID]*circle.Circle{admin.Self(): admin}
	type msg struct {
		from peer.ID
		out  circle.Outgoing
	}
	var queue []msg
	for i := 1; i < n; i++ {
		welcome, _, err := admin.Welcome(reqs[i])
		if err != nil {
			t.Fatal(err)
		}
		c, u, err := circle.Join(keys[i], pendings[i], welcome, opts)
		if err != nil {
			t.Fatalf("%s: join: %v", nodes[i].Name, err)
		}
		if c.Epoch() != final {
			t.Fatalf("%s joined epoch %v, not the final %v", nodes[i].Name, c.Epoch(), final)
		}
		circles[c.Self()] = c
		for _, o := range u.Send {
			queue = append(queue, msg{c.Self(), o})
		}
	}
	// The admin's own chain of the final epoch, as every member asks for
	// it (the hand-outs it made while adding went to smaller rosters).
	for p := range circles {
		if p == admin.Self() {
			continue
		}
		out, err := admin.HandleKeyMsg(p, circle.KeyMsg{Kind: circle.MsgKeyRequest, Circle: admin.ID(), Epoch: final})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range out {
			queue = append(queue, msg{admin.Self(), o})
		}
	}
	for len(queue) > 0 {
		m := queue[0]
		queue = queue[1:]
		if m.out.Roster != nil || m.out.Msg.Kind == circle.MsgSenderKey && m.out.Msg.Epoch != final {
			continue
		}
		to := []peer.ID{m.out.To}
		if len(m.out.Broadcast) > 0 {
			to = m.out.Broadcast // one hand-out for the members of the epoch before
		}
		for _, p := range to {
			c, ok := circles[p]
			if !ok {
				t.Fatalf("a key message to %s, who is not in the circle", p)
			}
			out, err := c.HandleKeyMsg(m.from, m.out.Msg)
			if err != nil {
				t.Fatalf("key message %d from %s to %s: %v", m.out.Msg.Kind, m.from, p, err)
			}
			for _, o := range out {
				queue = append(queue, msg{p, o})
			}
		}
	}
	for i, nd := range nodes {
		c := circles[keys[i].Identity().PeerID()]
		if h := c.Health(); !h.Member || h.Waiting > 0 {
			t.Fatalf("%s: circle formed at rest: %+v", nd.Name, h)
		}
		for p := range circles {
			if _, err := c.ReceiveKey(final, p, circle.DayOf(time.Now())); err != nil && p != c.Self() {
				t.Fatalf("%s lacks the sender key of %s: %v", nd.Name, p, err)
			}
		}
		st, err := c.State()
		if err != nil {
			t.Fatal(err)
		}
		db, err := store.Open(filepath.Join(nd.State, "remora.db"), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		err = db.SaveCircle(c.ID(), c.Ops(), st)
		db.Close()
		if err != nil {
			t.Fatalf("%s: save circle: %v", nd.Name, err)
		}
	}
	return fmt.Sprint(admin.ID())
}

// FormAndStart starts nodes (not started yet) in one formed circle, formed
// as form says: "joins", FormCircle over the network, one join at a time
// (joined, if set, is called after each); "rest", FormCircleAtRest, then
// every node started at once, waiting until every member holds every
// other's presence (report, if set, is called while it waits). It returns
// the circle ID.
func FormAndStart(tb testing.TB, nodes []*Node, form string, joined func(k int, took time.Duration), report func(fresh, pairs int, spread string)) string {
	tb.Helper()
	n := len(nodes)
	start := time.Now()
	var ci string
	switch form {
	case "joins":
		Parallel(n, 8, func(i int) { nodes[i].Start() })
		ci = FormCircle(tb, nodes, 10*time.Minute, joined)
	case "rest":
		ci = FormCircleAtRest(tb, nodes)
		Progress(tb, "%d members: circle formed at rest in %v", n, time.Since(start).Round(time.Second))
		started := time.Now()
		Parallel(n, 8, func(i int) { nodes[i].Start() })
		up := time.Since(started)
		// Members who have never been online together: nobody holds an
		// address of anyone until presence goes round.
		cold, fresh, pairs := AwaitPresence(nodes, started, started.Add(20*time.Minute), report)
		Progress(tb, "%d members, first start with no peer caches: all started in %v; every member holds every other's presence %v after the start (%d of %d pairs)", n, up.Round(10*time.Millisecond), cold.Round(10*time.Millisecond), fresh, pairs)
	default:
		tb.Fatalf("forming a circle by %q: want joins or rest", form)
	}
	return ci
}
