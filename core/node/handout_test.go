package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/core/circle"
	"github.com/remora-p2p/remora/core/envelope"
	"github.com/remora-p2p/remora/testenv"
)

// holdsAllKeys says whether every node is at one epoch and holds every
// other member's chain of it.
func holdsAllKeys(id circle.ID, nodes ...*testNode) bool {
	var e circle.Epoch
	for i, tn := range nodes {
		c, ok := tn.n.circleOf(id)
		if !ok {
			return false
		}
		if i == 0 {
			e = c.Epoch()
		}
		r := c.Roster()
		if c.Epoch() != e || r.Len() != len(nodes) {
			return false
		}
		for _, m := range r.Members() {
			if m.Peer == tn.n.ID() {
				continue
			}
			if _, ok := c.MessageKeys(id.EnvelopeID(), envelope.Epoch(e), m.Peer); !ok {
				return false
			}
		}
	}
	return true
}

// handOuts reads a node's hand-out counters.
func handOuts(tn *testNode) (bcast, direct int64) {
	c := tn.n.Counters()
	return c["key_handouts_broadcast"], c["key_handouts_direct"]
}

// TestJoinHandsOutOnce: when dave joins a circle of three, each of alice,
// bob and carol hands its new chain to the other two in one broadcast
// under the epoch before and to dave directly; dave, who cannot open that
// broadcast, hands his to each. 3(N−1) = 9 hand-outs instead of N(N−1) =
// 12, and every member ends up holding every other's key. A removal
// afterwards hands out directly only, to the members that remain.
func TestJoinHandsOutOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p nodes")
	}
	nodes := startDirNodes(t, t.TempDir(), 0, nil, "alice", "bob", "carol", "dave")
	a, b, c, d := nodes[0], nodes[1], nodes[2], nodes[3]
	ciID, id := newCircle(t, "bcast", a, b, c)
	testenv.WaitFor(t, "alice, bob and carol holding each other's keys", 60*time.Second, func() bool { return holdsAllKeys(id, a, b, c) })
	ac, _ := a.n.circleOf(id)
	old := ac.Epoch()
	type counts struct{ bcast, direct int64 }
	before := map[*testNode]counts{}
	taken := map[*testNode]int64{}
	for _, tn := range nodes {
		bc, dc := handOuts(tn)
		before[tn] = counts{bc, dc}
		taken[tn] = tn.n.Counters()["key_handouts_broadcast_taken"]
	}

	join(t, a, d, ciID)
	testenv.WaitFor(t, "all four holding each other's keys", 60*time.Second, func() bool { return holdsAllKeys(id, a, b, c, d) })
	tests := []struct {
		tn   *testNode
		want counts
	}{
		{a, counts{1, 1}},
		{b, counts{1, 1}},
		{c, counts{1, 1}},
		{d, counts{0, 3}},
	}
	total := int64(0)
	for _, tt := range tests {
		t.Run(tt.tn.name, func(t *testing.T) {
			bc, dc := handOuts(tt.tn)
			got := counts{bc - before[tt.tn].bcast, dc - before[tt.tn].direct}
			total += got.bcast + got.direct
			if got != tt.want {
				t.Fatalf("%s handed out %d broadcast and %d direct, want %d and %d", tt.tn.name, got.bcast, got.direct, tt.want.bcast, tt.want.direct)
			}
		})
	}
	if n := int64(4); total != 3*(n-1) {
		t.Fatalf("%d hand-outs for the 4th join, want 3(N−1) = %d, not N(N−1) = %d", total, 3*(n-1), n*(n-1))
	}
	// The members of the epoch before took each other's broadcasts (and
	// acked them: an entry waits until each of them does).
	for _, tn := range []*testNode{a, b, c} {
		testenv.WaitFor(t, tn.name+"'s hand-out broadcast acked", 60*time.Second, func() bool {
			tn.n.mu.Lock()
			defer tn.n.mu.Unlock()
			for _, e := range tn.n.outbox {
				if isHandOut(e) {
					return false
				}
			}
			return true
		})
		if got := tn.n.Counters()["key_handouts_broadcast_taken"] - taken[tn]; got != 2 {
			t.Errorf("%s took %d broadcast hand-outs, want 2", tn.name, got)
		}
	}

	// The broadcast, sealed as alice's node seals it: bob opens it, dave
	// (not a member of the epoch before) does not.
	km := circle.KeyMsg{Kind: circle.MsgSenderKey, Circle: id, Epoch: ac.Epoch(), Day: circle.DayOf(time.Now())}
	e := &OutboxEntry{ID: envelope.MessageID{7}, Circle: id, Kind: envelope.KindSenderKey, Epoch: old, Body: km.Marshal(),
		Created: time.Now(), Expiry: time.Now().Add(time.Hour)}
	chID := a.n.channels[0].ID
	sealed, err := a.n.seal(ac, e, "", a.n.channels[0].route())
	if err != nil {
		t.Fatal(err)
	}
	raw := sealed.Envelopes[0]
	if m, err := b.n.opener.Open(chID, raw); err != nil || m.Mode != envelope.ModeBroadcast || m.Sender != a.n.ID() {
		t.Fatalf("bob opens alice's hand-out: %v", err)
	}
	if _, err := d.n.opener.Open(chID, raw); !errors.Is(err, envelope.ErrNotForUs) {
		t.Fatalf("dave opens alice's hand-out under the epoch before he joined: %v", err)
	}

	// A removal: no broadcast, and nothing more under the epochs carol
	// was in, so the hand-out entry is dropped, not sealed.
	for _, tn := range nodes {
		bc, dc := handOuts(tn)
		before[tn] = counts{bc, dc}
	}
	if err := a.n.RemoveMember(context.Background(), api.MemberRequest{Who: "carol"}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "alice, bob and dave holding each other's keys", 60*time.Second, func() bool { return holdsAllKeys(id, a, b, d) })
	for _, tn := range []*testNode{a, b, d} {
		bc, dc := handOuts(tn)
		if bc != before[tn].bcast || dc-before[tn].direct != 2 {
			t.Errorf("%s after the removal: %d broadcast and %d direct hand-outs, want 0 and 2", tn.name, bc-before[tn].bcast, dc-before[tn].direct)
		}
	}
	if _, err := a.n.seal(ac, e, "", a.n.channels[0].route()); !errors.Is(err, circle.ErrHandOutClosed) {
		t.Fatalf("sealing a hand-out under an epoch carol was in after her removal: %v", err)
	}
	a.n.mu.Lock()
	a.n.outbox[e.ID] = e
	a.n.mu.Unlock()
	a.n.attempt(context.Background(), e, "")
	a.n.mu.Lock()
	_, kept := a.n.outbox[e.ID]
	a.n.mu.Unlock()
	if kept || a.n.Counters()["key_handouts_dropped"] == 0 {
		t.Fatal("a closed hand-out stays in the outbox")
	}
}
