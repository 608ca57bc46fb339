package node

import (
	"context"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/core/discovery"
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
