package transport

import (
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// PathTo returns the best live path to p now.
func (t *Transport) PathTo(p peer.ID) Path {
	path, _ := t.bestConn(p)
	return path
}

func pathRank(p Path) int {
	switch p {
	case PathLAN:
		return 4
	case PathPunched, PathDirect:
		return 3
	case PathRelayed:
		return 1
	}
	return 0
}

// bestConn returns the best path to p and the remote address of its connection.
func (t *Transport) bestConn(p peer.ID) (Path, ma.Multiaddr) {
	best, addr := PathNone, ma.Multiaddr(nil)
	t.mu.Lock()
	// A direct connection that appears while DCUtR runs is its work; the
	// end-of-punch trace may come a moment after the connection.
	punched := t.punched[p] || (!t.punching[p].IsZero() && time.Since(t.punching[p]) < punchWindow)
	t.mu.Unlock()
	for _, c := range t.h.Network().ConnsToPeer(p) {
		if c.IsClosed() {
			continue
		}
		ra := c.RemoteMultiaddr()
		var path Path
		switch {
		case c.Stat().Limited || isRelayAddr(ra):
			path = PathRelayed
		case !manet.IsPublicAddr(ra):
			path = PathLAN
		case punched:
			path = PathPunched
		default:
			path = PathDirect
		}
		if pathRank(path) > pathRank(best) {
			best, addr = path, ra
		}
	}
	return best, addr
}

// punchWindow bounds how long a started hole punch claims new direct
// connections (libp2p's DCUtR gives up well within it).
const punchWindow = 30 * time.Second

// notifiee marks peers whose connections changed; pathLoop turns the marks
// into events outside libp2p's notification goroutines.
type notifiee struct{ t *Transport }

func (n *notifiee) Listen(network.Network, ma.Multiaddr)      {}
func (n *notifiee) ListenClose(network.Network, ma.Multiaddr) {}
func (n *notifiee) Connected(_ network.Network, c network.Conn) {
	n.t.markDirty(c.RemotePeer())
}
func (n *notifiee) Disconnected(_ network.Network, c network.Conn) {
	n.t.markDirty(c.RemotePeer())
}

func (t *Transport) markDirty(p peer.ID) {
	t.mu.Lock()
	t.dirty[p] = struct{}{}
	t.mu.Unlock()
	select {
	case t.dirtySig <- struct{}{}:
	default:
	}
}

func (t *Transport) pathLoop() {
	defer t.wg.Done()
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-t.dirtySig:
		}
		t.mu.Lock()
		dirty := t.dirty
		t.dirty = map[peer.ID]struct{}{}
		t.mu.Unlock()
		for p := range dirty {
			t.updatePath(p)
		}
	}
}

// updatePath compares p's path with the last announced one and emits events.
func (t *Transport) updatePath(p peer.ID) {
	path, addr := t.bestConn(p)
	t.mu.Lock()
	prev, ok := t.paths[p]
	if !ok {
		prev = PathNone
	}
	if path == PathNone {
		delete(t.paths, p)
		delete(t.punched, p)
		delete(t.punching, p)
	} else {
		t.paths[p] = path
	}
	t.mu.Unlock()
	if path == prev {
		return
	}
	if pathRank(path) > pathRank(prev) || !path.IsDirect() {
		// a better path or a lost one: streams on the old conn are stale
		t.pool.drop(p)
	}
	switch {
	case prev == PathNone:
		t.emit(Event{Kind: EventConnected, Peer: p, Path: path, Prev: prev, Addr: addr})
		if path == PathRelayed {
			t.startUpgrade(p)
		}
	case path == PathNone:
		t.emit(Event{Kind: EventDisconnected, Peer: p, Path: path, Prev: prev})
		t.kickRelay(p) // our reservation went with the connection
	default:
		t.emit(Event{Kind: EventPathChanged, Peer: p, Path: path, Prev: prev, Addr: addr})
		if path == PathRelayed {
			t.startUpgrade(p)
		}
	}
}

// punchTracer learns from DCUtR which direct connections were punched.
type punchTracer struct{ t *Transport }

func (pt punchTracer) Trace(e *holepunch.Event) {
	switch ev := e.Evt.(type) {
	case *holepunch.StartHolePunchEvt:
		pt.t.mu.Lock()
		pt.t.punching[e.Remote] = time.Now()
		pt.t.mu.Unlock()
	case *holepunch.EndHolePunchEvt:
		pt.t.log.Debug("dcutr finished", "peer", e.Remote, "ok", ev.Success, "took", ev.EllapsedTime, "err", ev.Error)
		pt.t.mu.Lock()
		delete(pt.t.punching, e.Remote)
		pt.t.mu.Unlock()
		pt.t.dcutr.endInitiate(e.Remote)
		if ev.Success {
			pt.t.setPunched(e.Remote)
		}
	case *holepunch.DirectDialEvt:
		pt.t.log.Debug("dcutr direct dial", "peer", e.Remote, "ok", ev.Success, "err", ev.Error)
	case *holepunch.ProtocolErrorEvt:
		pt.t.log.Debug("dcutr protocol error", "peer", e.Remote, "err", ev.Error)
		pt.t.dcutr.endInitiate(e.Remote)
	}
}

func (t *Transport) setPunched(p peer.ID) {
	t.mu.Lock()
	t.punched[p] = true
	t.mu.Unlock()
	t.markDirty(p)
}
