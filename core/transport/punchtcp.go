package transport

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// TCP hole punching through DCUtR (issue #15, the udpoff-pr cell). QUIC
// punches whatever the roles: one UDP socket serves as client and server.
// TCP simultaneous open merges both ends' dials into one connection, libp2p
// takes the security roles from the DCUtR session (its receiver is the
// client, its initiator the server), and a NAT's connection tracking checks
// sequence numbers. So:
//
//   - One session per pair at a time. Both ends initiate when each holds an
//     inbound relayed connection, and two sessions with opposite roles make
//     both ends clients or both servers. dcutrSessions lets the session the
//     lower peer ID initiated go on and refuses the other.
//   - No plain dial beside the punch: libp2p joins a dial to an address
//     already being dialed, with the first dial's role (a plain dial is a
//     client). startUpgrade leaves the initiator's plain dial to DCUtR,
//     which makes it before the session starts, and both ends cancel
//     their plain dials still running (Connect does not cancel its direct
//     dial when the relay wins) as the session starts.
//   - The end that plain-dialed the other's TCP address lately sends its
//     SYN first. That dial died at the other's NAT but left a mapping in
//     its own NAT's connection tracking, with that dial's sequence numbers:
//     a SYN of the other end arriving before our new one finds the mapping
//     open, reaches our listener, whose SYN-ACK carries a new sequence
//     number and is dropped by our NAT as invalid (our reading of the
//     lab's conntrack: the entry stuck in SYN_SENT2, both dials timing
//     out; BENCHMARKS.md, the NAT matrix). Our new SYN on the same ports
//     renews the entry; the other end's SYN then meets our dialing socket,
//     a simultaneous open. An end that made no such dial waits
//     tcpPunchLead before its punch dial.
//
// And the TCP-only end must have a TCP address of the other to dial: an end
// that reached every observer over QUIC has only QUIC addresses observed.
// Where its NAT kept the UDP port (observed port = listen port), it most
// likely keeps the TCP port too; portPreservedTCP offers that address in
// DCUtR, only to peers with no public UDP address (who cannot use QUIC).

// tcpPunchLead is how long an end that made no recent plain TCP dial to the
// peer waits before its punch dial, so that the other end's SYN (which
// renews its NAT's mapping) is on the wire first.
const tcpPunchLead = 150 * time.Millisecond

// staleMapping is how long a NAT keeps the mapping of an unanswered SYN
// (Linux conntrack: 2 min in SYN_SENT).
const staleMapping = 2 * time.Minute

// dcutrMaxSession bounds how long an initiated session counts as running
// should libp2p report no end (its dials time out after 10 s).
const dcutrMaxSession = 20 * time.Second

var errDCUtRBusy = errors.New("a DCUtR session with this peer runs with the other roles")

// dcutrSessions tracks the DCUtR sessions this end takes part in, per peer.
type dcutrSessions struct {
	mu         sync.Mutex
	initiating map[peer.ID]time.Time // we opened the DCUtR stream (initiator)
	receiving  map[peer.ID]int       // the peer's DCUtR stream is being handled (receiver)
	plain      map[peer.ID]map[*plainDial]struct{}
	lastTCP    map[peer.ID]time.Time // our last plain dial to a public TCP address of the peer
}

// plainDial is one of our dials to a peer made without a DCUtR role.
type plainDial struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// trackPlain records a plain dial to p's addrs until the returned func is
// called.
func (s *dcutrSessions) trackPlain(p peer.ID, addrs []ma.Multiaddr, now time.Time, cancel context.CancelFunc) (untrack func()) {
	d := &plainDial{cancel: cancel, done: make(chan struct{})}
	s.mu.Lock()
	if slices.ContainsFunc(addrs, isPublicTCP) {
		if s.lastTCP == nil {
			s.lastTCP = map[peer.ID]time.Time{}
		}
		s.lastTCP[p] = now
	}
	if s.plain == nil {
		s.plain = map[peer.ID]map[*plainDial]struct{}{}
	}
	if s.plain[p] == nil {
		s.plain[p] = map[*plainDial]struct{}{}
	}
	s.plain[p][d] = struct{}{}
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.plain[p], d)
		if len(s.plain[p]) == 0 {
			delete(s.plain, p)
		}
		s.mu.Unlock()
		close(d.done)
	}
}

// stopPlain cancels our plain dials to p and waits (up to max) until they
// returned.
func (s *dcutrSessions) stopPlain(p peer.ID, max time.Duration) {
	s.mu.Lock()
	var ds []*plainDial
	for d := range s.plain[p] {
		ds = append(ds, d)
	}
	s.mu.Unlock()
	timeout := time.NewTimer(max)
	defer timeout.Stop()
	for _, d := range ds {
		d.cancel()
		select {
		case <-d.done:
		case <-timeout.C:
			return
		}
	}
}

// beginInitiate reports whether we may initiate a session with p: not while
// we are the receiver of p's.
func (s *dcutrSessions) beginInitiate(p peer.ID, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.receiving[p] > 0 {
		return false
	}
	if s.initiating == nil {
		s.initiating = map[peer.ID]time.Time{}
	}
	s.initiating[p] = now
	return true
}

// beginReceive reports whether we take p's session as receiver: not while
// we initiate ours if our peer ID is the lower (p, the higher, takes ours
// and its own fails on our refusal).
func (s *dcutrSessions) beginReceive(self, p peer.ID, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if at, ok := s.initiating[p]; ok && now.Sub(at) < dcutrMaxSession && self < p {
		return false
	}
	if s.receiving == nil {
		s.receiving = map[peer.ID]int{}
	}
	s.receiving[p]++
	return true
}

func (s *dcutrSessions) endReceive(p peer.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.receiving[p]--; s.receiving[p] <= 0 {
		delete(s.receiving, p)
	}
}

// endInitiate forgets our session with p (libp2p traced its end).
func (s *dcutrSessions) endInitiate(p peer.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.initiating, p)
}

// dialedTCP reports whether we plain-dialed a public TCP address of p
// within staleMapping.
func (s *dcutrSessions) dialedTCP(p peer.ID, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.lastTCP[p]
	return ok && now.Sub(at) < staleMapping
}

// punchHost is the host the DCUtR service sees: it marks the sessions as
// they start (the service opens the initiator's stream with NewStream and
// registers the receiver's handler with SetStreamHandler) and orders the
// punch dials (Connect).
type punchHost struct {
	host.Host
	t *Transport
}

func (h punchHost) SetStreamHandler(pid protocol.ID, handler network.StreamHandler) {
	if pid != holepunch.Protocol {
		h.Host.SetStreamHandler(pid, handler)
		return
	}
	h.Host.SetStreamHandler(pid, func(s network.Stream) {
		p := s.Conn().RemotePeer()
		if !h.t.dcutr.beginReceive(h.t.self, p, h.t.now()) {
			h.t.log.Debug("dcutr: refused the peer's session, ours runs", "peer", p)
			s.Reset()
			return
		}
		defer h.t.dcutr.endReceive(p)
		// Our punch dial must be a new socket: joined to a plain dial
		// about to time out, it sends no fresh SYN, and the peer's SYN
		// may arrive after that socket closed (then our listener
		// answers, see above).
		h.t.dcutr.stopPlain(p, time.Second)
		handler(s) // returns after the receiver's punch dial
	})
}

func (h punchHost) NewStream(ctx context.Context, p peer.ID, pids ...protocol.ID) (network.Stream, error) {
	if slices.Contains(pids, holepunch.Protocol) {
		if !h.t.dcutr.beginInitiate(p, h.t.now()) {
			h.t.log.Debug("dcutr: not initiating, the peer's session runs", "peer", p)
			return nil, errDCUtRBusy
		}
		h.t.dcutr.stopPlain(p, time.Second)
	}
	return h.Host.NewStream(ctx, p, pids...)
}

// punchFilter adds the port-preserved TCP guess to what we offer in DCUtR.
type punchFilter struct{ t *Transport }

func (f punchFilter) FilterLocal(p peer.ID, addrs []ma.Multiaddr) []ma.Multiaddr {
	if f.t.hasPublicUDP(p) {
		return addrs
	}
	for _, a := range f.t.portPreservedTCP() {
		if !slices.ContainsFunc(addrs, a.Equal) {
			addrs = append(addrs, a)
		}
	}
	return addrs
}

func (f punchFilter) FilterRemote(_ peer.ID, addrs []ma.Multiaddr) []ma.Multiaddr { return addrs }

// Connect is how the DCUtR service dials: its plain dial first (recorded
// like ours), then the punch dials, which wait for the other end's SYN
// unless we dialed p's TCP address lately.
func (h punchHost) Connect(ctx context.Context, pi peer.AddrInfo) error {
	addrs := pi.Addrs
	if len(addrs) == 0 {
		addrs = h.Peerstore().Addrs(pi.ID) // libp2p dials all it knows
	}
	if sim, _, _ := network.GetSimultaneousConnect(ctx); !sim {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		defer h.t.dcutr.trackPlain(pi.ID, addrs, h.t.now(), cancel)()
		return h.Host.Connect(ctx, pi)
	}
	if !slices.ContainsFunc(addrs, isTCP) || h.t.dcutr.dialedTCP(pi.ID, h.t.now()) {
		return h.Host.Connect(ctx, pi)
	}
	// Only the TCP dial waits: QUIC punches as soon as it may. libp2p
	// merges both calls into its one dial of the peer.
	tcp := slices.DeleteFunc(slices.Clone(addrs), func(a ma.Multiaddr) bool { return !isTCP(a) })
	other := slices.DeleteFunc(slices.Clone(addrs), isTCP)
	errc := make(chan error, 2)
	if len(other) > 0 {
		go func() { errc <- h.Host.Connect(ctx, peer.AddrInfo{ID: pi.ID, Addrs: other}) }()
	} else {
		errc <- errors.New("no address but TCP")
	}
	go func() {
		select {
		case <-time.After(tcpPunchLead):
			errc <- h.Host.Connect(ctx, peer.AddrInfo{ID: pi.ID, Addrs: tcp})
		case <-ctx.Done():
			errc <- ctx.Err()
		}
	}()
	first := <-errc
	if first == nil {
		return nil // the other call ends with ctx (the caller's timeout) or at once
	}
	if second := <-errc; second != nil {
		return errors.Join(first, second)
	}
	return nil
}

func isTCP(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_TCP)
	return err == nil
}

func isPublicTCP(a ma.Multiaddr) bool {
	return isTCP(a) && !isRelayAddr(a) && manet.IsPublicAddr(a)
}

// hasPublicUDP reports whether we know a public UDP address of p.
func (t *Transport) hasPublicUDP(p peer.ID) bool {
	return slices.ContainsFunc(t.h.Peerstore().Addrs(p), func(a ma.Multiaddr) bool {
		_, err := a.ValueForProtocol(ma.P_UDP)
		return err == nil && !isRelayAddr(a) && manet.IsPublicAddr(a)
	})
}

// portPreservedTCP guesses our public TCP addresses when no peer observed
// one: the IP of an observed UDP address whose port is our UDP listen port
// (the NAT kept the port), with our TCP listen port.
func (t *Transport) portPreservedTCP() []ma.Multiaddr {
	obs := t.observedAddrs()
	if slices.ContainsFunc(obs, func(a Addr) bool { return isTCP(a.Multiaddr) && a.Kind != AddrLAN }) {
		return nil // a real one is known
	}
	return guessTCP(obs, t.h.Network().ListenAddresses())
}

// guessTCP is portPreservedTCP's rule on given observed and listen addresses.
func guessTCP(obs []Addr, listen []ma.Multiaddr) []ma.Multiaddr {
	var udpPorts, tcpPorts []string
	for _, l := range listen {
		if p, err := l.ValueForProtocol(ma.P_UDP); err == nil {
			udpPorts = append(udpPorts, p)
		} else if p, err := l.ValueForProtocol(ma.P_TCP); err == nil {
			tcpPorts = append(tcpPorts, p)
		}
	}
	var out []ma.Multiaddr
	for _, o := range obs {
		if o.Kind == AddrLAN || o.Kind == AddrRelay {
			continue
		}
		port, err := o.Multiaddr.ValueForProtocol(ma.P_UDP)
		if err != nil || !slices.Contains(udpPorts, port) {
			continue
		}
		ip, _ := ma.SplitFirst(o.Multiaddr)
		if ip == nil {
			continue
		}
		for _, tp := range tcpPorts {
			tcp, err := ma.NewComponent("tcp", tp)
			if err != nil {
				continue
			}
			a := ma.Join(ma.Multiaddr{*ip}, ma.Multiaddr{*tcp})
			if !slices.ContainsFunc(out, a.Equal) {
				out = append(out, a)
			}
		}
	}
	return out
}
