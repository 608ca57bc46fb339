package transport

import (
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// ConnInfo describes the connection that carries the best live path to a
// peer: which address it runs over and who dialed it. The node uses it to
// say which bootstrap box's address made the path in use.
type ConnInfo struct {
	Path Path
	// Remote is the peer's address on that connection (for a connection we
	// dialed, the address we dialed; for a relayed one, the circuit).
	Remote ma.Multiaddr
	// Outbound is true when this node dialed it.
	Outbound bool
}

// Conn returns the connection behind PathTo(p); Path is PathNone when there
// is none.
func (t *Transport) Conn(p peer.ID) ConnInfo {
	path, addr := t.bestConn(p)
	info := ConnInfo{Path: path, Remote: addr}
	if path == PathNone {
		return info
	}
	for _, c := range t.h.Network().ConnsToPeer(p) {
		if !c.IsClosed() && c.RemoteMultiaddr().Equal(addr) {
			info.Outbound = c.Stat().Direction == network.DirOutbound
			break
		}
	}
	return info
}
