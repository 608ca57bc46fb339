package circle

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestOpWaitsForParents: a roster op that arrives before its parent is kept
// (durably, in the circle's state), its parent is asked of the member that
// sent it, and it applies when the parent arrives. Before, ApplyOp refused
// it with ErrMissingParent and the node acknowledged and dropped it, so the
// devices diverged for good.
func TestOpWaitsForParents(t *testing.T) {
	c := &clock{time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	g := group(t, c, 3)
	u1, err := g[0].SetChannel(Channel{ID: "c1", Kind: "dir", Address: "/srv/a"})
	if err != nil {
		t.Fatal(err)
	}
	u2, err := g[0].SetChannel(Channel{ID: "c2", Kind: "dir", Address: "/srv/b"})
	if err != nil {
		t.Fatal(err)
	}
	// g[2] gets the child first, from g[0].
	w, err := g[2].ApplyOpFrom(g[0].Self(), u2.Op.Raw())
	if err != nil {
		t.Fatal(err)
	}
	if !w.Waiting || w.Op != nil || g[2].HasOp(u2.Op.Hash()) {
		t.Fatalf("child applied or not kept: %+v", w)
	}
	if len(w.Send) != 1 || w.Send[0].To != g[0].Self() || w.Send[0].Msg.Kind != MsgOpRequest ||
		!slices.Equal(w.Send[0].Msg.Want, []Hash{u1.Op.Hash()}) {
		t.Fatalf("request for the parent: %+v", w.Send)
	}
	// A duplicate is no second entry and still no error.
	if w, err := g[2].ApplyOpFrom(g[0].Self(), u2.Op.Raw()); err != nil || !w.Waiting {
		t.Fatalf("duplicate: %+v %v", w, err)
	}
	// The waiting op survives a restart.
	state, err := g[2].State()
	if err != nil {
		t.Fatal(err)
	}
	g2, err := Load(g[2].keys, g[2].Ops(), state, opts(c))
	if err != nil {
		t.Fatal(err)
	}
	// g[0] answers the request with what g[2] lacks.
	answer, err := g[0].HandleKeyMsg(g[2].Self(), w.Send[0].Msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(answer) != 1 || answer[0].To != g[2].Self() || !slices.Equal(answer[0].Roster, u1.Op.Raw()) {
		t.Fatalf("answer: %+v", answer)
	}
	u, err := g2.ApplyOpFrom(g[0].Self(), answer[0].Roster)
	if err != nil {
		t.Fatal(err)
	}
	if len(u.Applied) != 2 || u.Applied[1].Hash() != u2.Op.Hash() {
		t.Fatalf("applied %d ops, want the parent and the op that waited for it", len(u.Applied))
	}
	if !slices.Equal(g2.Roster().Heads, g[0].Roster().Heads) || len(g2.Roster().Channels()) != 2 {
		t.Fatal("replica did not converge")
	}
	if len(g2.Requests()) != 0 {
		t.Fatalf("still asking: %+v", g2.Requests())
	}
}

// TestWaitingOpsBounded: what waits is bounded by bytes per sender and in
// all; past the bound nothing is kept and ErrRosterBacklog tells the node
// not to acknowledge. Waiting ops whose parents never come are dropped
// after the maximum age.
func TestWaitingOpsBounded(t *testing.T) {
	c := &clock{time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	g := group(t, c, 3)
	orphan := func(i int) []byte {
		o := Op{Circle: g[0].ID(), Parents: []Hash{{byte(i), byte(i >> 8), 1}}, Kind: OpChannelSet, Time: c.t,
			Channel: Channel{ID: "c", Kind: "dir", Address: strings.Repeat("a", MaxChannelText)}}
		if err := o.sign(g[1].keys.Identity()); err != nil {
			t.Fatal(err)
		}
		return o.Raw()
	}
	size := len(orphan(0))
	per := MaxWaitingBytesPerSender / size
	for i := range per {
		if _, err := g[0].ApplyOpFrom(g[1].Self(), orphan(i)); err != nil {
			t.Fatalf("op %d of %d: %v", i, per, err)
		}
	}
	if _, err := g[0].ApplyOpFrom(g[1].Self(), orphan(per)); !errors.Is(err, ErrRosterBacklog) {
		t.Fatalf("past the per-sender bound: %v", err)
	}
	// Another sender still has room.
	if _, err := g[0].ApplyOpFrom(g[2].Self(), orphan(per+1)); err != nil {
		t.Fatal(err)
	}
	c.t = c.t.Add(DefaultMaxAge + time.Hour)
	g[0].Maintain()
	if _, err := g[0].ApplyOpFrom(g[1].Self(), orphan(per)); err != nil {
		t.Fatalf("after the old ones expired: %v", err)
	}
}

// TestAdderForwardsMissedOps: admin B changes a channel while admin A adds
// X; B sends its op to the members it knows, not X. A, X's adder, forwards
// it to X when it applies it, so X does not wait for some later op to
// bring it.
func TestAdderForwardsMissedOps(t *testing.T) {
	c := &clock{time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	g := group(t, c, 2) // two admins
	x := newKeyring(t, c)
	ub, err := g[1].SetChannel(Channel{ID: "c1", Kind: "dir", Address: "/srv/b"})
	if err != nil {
		t.Fatal(err)
	}
	ua, err := g[0].AddMember(x.Identity().PeerID(), x.Current(), "x", RoleMember)
	if err != nil {
		t.Fatal(err)
	}
	if g[0].log.Precedes(ub.Op.Hash(), ua.Op.Hash()) {
		t.Fatal("the two ops are not concurrent")
	}
	u, err := g[0].ApplyOpFrom(g[1].Self(), ub.Op.Raw())
	if err != nil {
		t.Fatal(err)
	}
	var fwd []Outgoing
	for _, o := range u.Send {
		if o.Roster != nil {
			fwd = append(fwd, o)
		}
	}
	if len(fwd) != 1 || fwd[0].To != x.Identity().PeerID() || !slices.Equal(fwd[0].Roster, ub.Op.Raw()) {
		t.Fatalf("forwarded %+v, want B's op to X", fwd)
	}
	// B, not X's adder, forwards nothing when it gets A's add.
	u, err = g[1].ApplyOpFrom(g[0].Self(), ua.Op.Raw())
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range u.Send {
		if o.Roster != nil {
			t.Fatalf("B forwarded %x to %s", o.Roster[:8], o.To)
		}
	}
}
