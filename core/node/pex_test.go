package node

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/core/discovery"
	"github.com/remora-p2p/remora/core/presence"
	"github.com/remora-p2p/remora/testenv"
)

// TestPEXOnly: three members whose only way to find each other is peer
// exchange. The circle is made over a folder channel; then every node
// restarts with no channel, no peer cache and no mDNS, and alice alone is
// handed bob's and carol's addresses (standing in for "alice reached both").
// Bob and carol must find each other through alice's gossip, connect, and
// carry a message; each names pex as the box whose address made the path.
// Run it 50 times under -race: go test -race -run TestPEXOnly -count 50 ./core/node
func TestPEXOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three libp2p nodes")
	}
	root := t.TempDir()
	nodes := startDirNodes(t, root, 0, nil, "alice", "bob", "carol")
	a, b, c := nodes[0], nodes[1], nodes[2]
	ctx := context.Background()
	ciID, _ := newCircle(t, "pex", a, b, c)
	for _, n := range nodes {
		n.stop()
		n.tune = func(o *Options) {
			o.Channels = nil
			o.Boxes.NoCache = true
			o.Boxes.PEXInterval = time.Second
		}
		n.start()
	}
	for _, peer := range []*testNode{b, c} {
		var addrs = peer.n.tr.Addrs()
		f := discovery.Found{Peer: peer.n.ID(), Source: "seed"}
		for _, ad := range addrs {
			f.Addrs = append(f.Addrs, ad.Multiaddr)
		}
		a.n.learnAddrs(f)
	}
	testenv.WaitFor(t, "alice connected to bob and carol", 30*time.Second, func() bool {
		return a.n.tr.PathTo(b.n.ID()).Live() && a.n.tr.PathTo(c.n.ID()).Live()
	})
	testenv.WaitFor(t, "bob and carol connected through peer exchange", 30*time.Second, func() bool {
		return b.n.tr.PathTo(c.n.ID()).Live() || c.n.tr.PathTo(b.n.ID()).Live()
	})
	viaOf := func(x, y *testNode) string {
		peers, _ := x.n.Peers(ctx)
		for _, p := range peers {
			if p.PeerID == y.n.ID().String() {
				return p.Via
			}
		}
		return ""
	}
	testenv.WaitFor(t, "bob or carol naming pex as the box that made the path", 10*time.Second, func() bool {
		return viaOf(b, c) == "pex" || viaOf(c, b) == "pex"
	})
	if _, err := b.n.Send(ctx, api.SendRequest{Circle: ciID, To: []string{c.n.ID().String()}, Text: "found you by gossip"}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "carol got bob's message", 30*time.Second, func() bool {
		return texts(inbox(t, c.n))["found you by gossip"] == 1
	})
	boxes, _ := b.n.Boxes(ctx)
	for _, bx := range boxes {
		if bx.Name == "pex" && (bx.State != "ok" || bx.Found < 1) {
			t.Fatalf("bob's pex box: %+v", bx)
		}
		if bx.Name == "cache" && bx.Configured {
			t.Fatalf("cache box on: %+v", bx)
		}
	}
}

// TestPresenceNotNewerSkipsTheCheck: a record that claims no newer sequence
// than the one held is skipped before its signature is checked (peer
// exchange repeats every record a member holds); one that claims a newer
// sequence is checked, and a bad signature still keeps it out. The
// decision is asserted, not the counters: the two nodes' own gossip moves
// them meanwhile.
func TestPresenceNotNewerSkipsTheCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p nodes")
	}
	nodes := startDirNodes(t, t.TempDir(), 0, nil, "alice", "bob")
	a, b := nodes[0], nodes[1]
	_, id := newCircle(t, "pex", a, b)
	signed := func(seq uint64) []byte {
		t.Helper()
		rec, err := b.n.record()
		if err != nil {
			t.Fatal(err)
		}
		rec.Seq = seq
		raw, err := presence.Sign(rec.ForChannel(false), b.n.self.PrivateKey())
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	broken := func(raw []byte) []byte {
		out := slices.Clone(raw)
		out[len(out)-1] ^= 1
		return out
	}
	heldSeq := func() uint64 {
		a.n.mu.Lock()
		defer a.n.mu.Unlock()
		if pi := a.n.peers[b.n.ID()]; pi != nil && pi.record != nil {
			return pi.record.Seq
		}
		return 0
	}
	const seq = 1 << 50 // above anything bob publishes in the test
	if a.n.presenceHeld(signed(seq)) {
		t.Fatal("a record newer than any held counts as held")
	}
	a.n.acceptPresence(id.EnvelopeID(), signed(seq), "test")
	if got := heldSeq(); got != seq {
		t.Fatalf("alice holds bob's record %d, want %d", got, seq)
	}
	tests := []struct {
		name string
		raw  []byte
		held bool
	}{
		{"the same record again", signed(seq), true},
		{"an older one, signature broken", broken(signed(seq - 1)), true},
		{"a newer one, signature broken", broken(signed(seq + 1)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := a.n.presenceHeld(tt.raw); got != tt.held {
				t.Errorf("held %v, want %v", got, tt.held)
			}
			dropped := a.n.Counters()["dropped_presence"]
			a.n.acceptPresence(id.EnvelopeID(), tt.raw, "test")
			if !tt.held && a.n.Counters()["dropped_presence"] == dropped {
				t.Error("a newer claim with a broken signature was not checked and dropped")
			}
			if got := heldSeq(); got != seq {
				t.Errorf("alice now holds bob's record %d, want %d", got, seq)
			}
		})
	}
}

// TestRefusedExchangeStaysDue: an exchange the receiver refuses for coming
// too soon after the last one is NACKed, so the sender's gossip does not
// count its records as sent and they go in a later exchange. Before, the
// refused exchange was acked and its records were never sent again.
func TestRefusedExchangeStaysDue(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p nodes")
	}
	nodes := startDirNodes(t, t.TempDir(), 0, nil, "alice", "bob")
	a, b := nodes[0], nodes[1]
	newCircle(t, "pex", a, b)
	ctx := context.Background()
	testenv.WaitFor(t, "alice and bob connected", 30*time.Second, func() bool {
		return b.n.tr.PathTo(a.n.ID()).Live()
	})
	due := func() int {
		own := b.n.ownRecord()
		n := 0
		for _, c := range b.n.allCircles() {
			n += len(b.n.gossip.Pick(a.n.ID(), own, b.n.heldRecords(c), true))
		}
		return n
	}
	refusedBefore := a.n.Counters()["dropped_pex_rate"]
	// Alice has just accepted an exchange from bob: the next one within
	// pexReceiveGap is refused.
	a.n.mu.Lock()
	a.n.peerLocked(b.n.ID()).pexAt = a.n.opts.Now()
	a.n.mu.Unlock()
	b.n.gossip.Forget(a.n.ID()) // everything is due to alice again
	if due() == 0 {
		t.Fatal("nothing due to alice after Forget")
	}
	b.n.exchangeWith(ctx, a.n.ID(), true)
	if got := a.n.Counters()["dropped_pex_rate"]; got <= refusedBefore {
		t.Fatalf("alice refused %d exchanges for their rate, want more than %d: the exchange was not refused, so the test proves nothing", got, refusedBefore)
	}
	if due() == 0 {
		t.Fatal("bob counts the records of an exchange alice refused as sent: they would never go again")
	}
	// Past the gap an exchange is accepted and then counts.
	testenv.WaitFor(t, "a later exchange carrying them", 30*time.Second, func() bool {
		b.n.exchangeWith(ctx, a.n.ID(), true)
		return due() == 0
	})
}
