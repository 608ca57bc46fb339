package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/testenv"
)

// TestCacheOnly: two members meet over a folder channel, then both restart
// with the peer cache as their only box (no channel, no peer exchange, no
// mDNS) and find each other again from what the cache kept, scored by the
// dials that worked before the restart.
func TestCacheOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p nodes")
	}
	root := t.TempDir()
	ports := map[string]int{"alice": testenv.FreePort(t), "bob": testenv.FreePort(t)}
	nodes := startDirNodes(t, root, 0, nil)
	for _, name := range []string{"alice", "bob"} {
		more := startDirNodesTuned(t, root, func(o *Options) {
			o.ListenAddrs = []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", ports[name])}
		}, name)
		nodes = append(nodes, more...)
	}
	a, b := nodes[0], nodes[1]
	ctx := context.Background()
	ci, err := a.n.CreateCircle(ctx, api.CreateCircleRequest{Name: "cache"})
	if err != nil {
		t.Fatal(err)
	}
	join(t, a, b, ci.ID)
	testenv.WaitFor(t, "alice and bob connected over the channel's presence", 30*time.Second, func() bool {
		return a.n.tr.PathTo(b.n.ID()).Live()
	})
	testenv.WaitFor(t, "a dial recorded as a success in the cache, and both caching the other", 10*time.Second, func() bool {
		ok := false
		for _, x := range [][2]*testNode{{a, b}, {b, a}} {
			for _, ad := range x[0].n.cache.Addrs(x[1].n.ID()) {
				ok = ok || ad.Successes > 0
			}
		}
		return ok && len(a.n.cache.Addrs(b.n.ID())) > 0 && len(b.n.cache.Addrs(a.n.ID())) > 0
	})
	for _, n := range nodes {
		n.stop()
	}
	for _, n := range nodes {
		tune := n.tune
		n.tune = func(o *Options) {
			tune(o)
			o.Channels, o.Boxes.NoPEX = nil, true
		}
		n.start()
	}
	start := time.Now()
	testenv.WaitFor(t, "alice and bob reconnected from the cache", 30*time.Second, func() bool {
		return a.n.tr.PathTo(b.n.ID()).Live() || b.n.tr.PathTo(a.n.ID()).Live()
	})
	t.Logf("reconnected from the cache in %v", time.Since(start).Round(time.Millisecond))
	testenv.WaitFor(t, "a side naming the cache as the box that made the path", 10*time.Second, func() bool {
		for _, x := range [][2]*testNode{{a, b}, {b, a}} {
			peers, _ := x[0].n.Peers(ctx)
			for _, p := range peers {
				if p.PeerID == x[1].n.ID().String() && p.Via == "cache" {
					return true
				}
			}
		}
		return false
	})
	if _, err := a.n.Send(ctx, api.SendRequest{Circle: ci.ID, Text: "remembered"}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "bob got the message", 30*time.Second, func() bool { return texts(inbox(t, b.n))["remembered"] == 1 })
	for _, n := range []*testNode{a, b} {
		boxes, _ := n.n.Boxes(ctx)
		for _, bx := range boxes {
			if bx.Name == "cache" && (bx.Found != 1 || bx.State != "ok") {
				t.Errorf("%s: cache box %+v, want ok with the other member found", n.name, bx)
			}
		}
	}
}
