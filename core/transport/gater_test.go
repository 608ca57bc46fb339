package transport

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// TestGaterRefusesDialsOnceClosed: a dial that reaches libp2p's swarm while
// it removes its transports can panic (see InterceptPeerDial); once Close has
// begun the gater lets no dial through, so none gets that far.
func TestGaterRefusesDialsOnceClosed(t *testing.T) {
	p := peer.ID("self")
	addr := ma.StringCast("/ip4/192.0.2.1/udp/4001/quic-v1")
	tr := &Transport{self: p}
	g := gater{t: tr}
	if !g.InterceptPeerDial(p) || !g.InterceptAddrDial(p, addr) {
		t.Fatal("an admitted peer's dial refused before Close")
	}
	tr.closed.Store(true)
	if g.InterceptPeerDial(p) {
		t.Error("InterceptPeerDial let a dial through after Close began")
	}
	if g.InterceptAddrDial(p, addr) {
		t.Error("InterceptAddrDial let a dial through after Close began")
	}
}
