package transport

import (
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// gater admits only members (Options.Allow) and the configured static relays,
// in both directions. For a relayed connection the peer checked is the far
// end, not the relay, so relay traffic is admitted only for members.
type gater struct{ t *Transport }

// No dial passes once Close has begun: libp2p's swarm removes its
// transports while closing, and a forced-direct dial whose addresses were
// filtered before that looks up a transport that is gone and panics
// (swarm.nonProxyAddr, go-libp2p v0.51/v0.52). Refusing here empties the
// address list before that lookup.
func (g gater) InterceptPeerDial(p peer.ID) bool { return !g.t.closed.Load() && g.t.admitted(p) }

func (g gater) InterceptAddrDial(p peer.ID, a ma.Multiaddr) bool {
	if g.t.closed.Load() || !g.t.admitted(p) {
		return false
	}
	if g.t.dialOK == nil {
		return true
	}
	if isRelayAddr(a) {
		// what is dialed is the relay: judge its address
		before, _ := ma.SplitFunc(a, func(c ma.Component) bool { return c.Protocol().Code == ma.P_CIRCUIT })
		a, _ = peer.SplitAddr(before)
		if a == nil {
			return false
		}
	}
	return g.t.dialOK(a)
}

// InterceptAccept runs before the handshake, when the peer is not known yet.
func (g gater) InterceptAccept(network.ConnMultiaddrs) bool { return true }

func (g gater) InterceptSecured(dir network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	ok := g.t.admitted(p)
	if !ok {
		g.t.log.Debug("gater: refused non-member", "peer", p, "dir", dir)
	}
	return ok
}

func (g gater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }

// relayACL lets only members reserve slots on, and connect through, our relay.
type relayACL struct{ t *Transport }

func (a relayACL) AllowReserve(p peer.ID, _ ma.Multiaddr) bool {
	if !a.t.allow(p) {
		return false
	}
	a.t.mu.Lock()
	a.t.served[p] = a.t.now()
	a.t.mu.Unlock()
	return true
}

func (a relayACL) AllowConnect(src peer.ID, _ ma.Multiaddr, dest peer.ID) bool {
	return a.t.allow(src) && a.t.allow(dest)
}
