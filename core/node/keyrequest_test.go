package node

import (
	"fmt"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/remora-p2p/remora/core/envelope"
)

// TestHeldEnvelopesAskTheirSenderOnce: a member that lacks keys of a new
// epoch (here alice, after dave joined while bob and carol were away) and
// holds many envelopes from bob asks bob, once, for bob's key, and asks
// nobody else. Each held envelope used to ask every member whose key was
// missing: 20 envelopes made 20 queries to bob and 20 to carol, and in a
// circle forming in one Matrix room those queries and their answers grew
// until joins stalled at 25 members (BENCHMARKS.md, scale).
func TestHeldEnvelopesAskTheirSenderOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p nodes")
	}
	nodes := startDirNodes(t, t.TempDir(), 0, nil, "alice", "bob", "carol", "dave")
	a, b, c, d := nodes[0], nodes[1], nodes[2], nodes[3]
	ci, id := newCircle(t, "asks", a, b, c)
	bob, carol := peer.ID(b.n.ID()), peer.ID(c.n.ID())
	b.stop()
	c.stop()
	join(t, a, d, ci)
	ac, _ := a.n.circleOf(id)
	queries := func(to peer.ID) int {
		a.n.mu.Lock()
		defer a.n.mu.Unlock()
		n := 0
		for _, e := range a.n.outbox {
			if e.Kind == envelope.KindKeyQuery && len(e.Pending) == 1 && e.Pending[0] == to {
				n++
			}
		}
		return n
	}
	beforeBob, beforeCarol := queries(bob), queries(carol)
	chID := a.n.channels[0].ID
	for i := range 20 {
		raw := fmt.Appendf(nil, "an envelope from bob that waits for bob's key %02d", i)
		oe := &envelope.OpenError{Err: envelope.ErrKeyNotYet, Circle: id.EnvelopeID(), Epoch: envelope.Epoch(ac.Epoch()), Sender: bob}
		if err := a.n.openFailed(chID, raw, "channel:shared", oe); err != nil {
			t.Fatal(err)
		}
	}
	if got := a.n.Counters()["held_key_not_yet"]; got < 20 {
		t.Fatalf("%d envelopes held, want 20", got)
	}
	if got := queries(bob) - beforeBob; got != 1 {
		t.Errorf("20 held envelopes from bob asked bob %d times for his key, want once", got)
	}
	if got := queries(carol) - beforeCarol; got != 0 {
		t.Errorf("20 held envelopes from bob asked carol %d times for her key, want never", got)
	}
}
