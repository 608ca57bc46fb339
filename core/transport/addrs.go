package transport

import (
	"slices"
	"sort"

	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// Addrs returns this transport's addresses, each with its kind: interface
// addresses (lan or public), addresses peers observed (with the number of
// distinct observers; libp2p's own threshold of 4 is too high for a small
// circle, so every report counts and the node decides), port mappings, and
// relay addresses of live reservations. LAN addresses must never be
// published to a channel.
func (t *Transport) Addrs() []Addr {
	ifaceAddrs, _ := t.h.Network().InterfaceListenAddresses()
	seen := map[string]bool{}
	var out []Addr
	add := func(a Addr) {
		k := string(a.Multiaddr.Bytes())
		if seen[k] {
			return
		}
		seen[k] = true
		out = append(out, a)
	}
	for _, a := range ifaceAddrs {
		if isRelayAddr(a) {
			continue // the relay transport's bare /p2p-circuit listener
		}
		add(Addr{Multiaddr: a, Kind: classify(a, true)})
	}
	for _, a := range t.observedAddrs() {
		add(a)
	}
	t.mu.Lock()
	var relayAddrs []ma.Multiaddr
	for _, as := range t.rsvp {
		relayAddrs = append(relayAddrs, as...)
	}
	t.mu.Unlock()
	// What libp2p advertises: interface and observed addresses again, plus
	// NAT port mappings, which are the only ones left unclassified.
	for _, a := range t.h.Addrs() {
		if isRelayAddr(a) {
			continue // ours come from our own reservations below
		}
		k := classify(a, false)
		if k == AddrObserved {
			k = AddrMapped
		}
		add(Addr{Multiaddr: a, Kind: k})
	}
	for _, a := range relayAddrs {
		add(Addr{Multiaddr: a, Kind: AddrRelay})
	}
	sort.SliceStable(out, func(i, j int) bool { return kindRank(out[i].Kind) < kindRank(out[j].Kind) })
	return out
}

// observedAddrs lists our addresses as peers reported them, each with the
// number of distinct observers whose report is younger than observedTTL.
func (t *Transport) observedAddrs() []Addr {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	var out []Addr
	for _, o := range t.observed {
		a := Addr{Multiaddr: o.addr, Kind: classify(o.addr, false)}
		for _, at := range o.observers {
			if now.Sub(at) > observedTTL {
				continue
			}
			a.Observers++
			if at.After(a.ObservedAt) {
				a.ObservedAt = at
			}
		}
		if a.Observers > 0 {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Observers > out[j].Observers })
	return out
}

func kindRank(k AddrKind) int {
	return slices.Index([]AddrKind{AddrLAN, AddrPublic, AddrMapped, AddrObserved, AddrRelay}, k)
}

// classify names an address's kind; onInterface says it is bound locally.
func classify(a ma.Multiaddr, onInterface bool) AddrKind {
	switch {
	case isRelayAddr(a):
		return AddrRelay
	case !manet.IsPublicAddr(a):
		return AddrLAN
	case onInterface:
		return AddrPublic
	default:
		return AddrObserved
	}
}

func isRelayAddr(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}

// holePunchAddrs feeds DCUtR: every public direct address we know,
// including observed ones with a single observer.
func (t *Transport) holePunchAddrs() []ma.Multiaddr {
	var out []ma.Multiaddr
	for _, a := range t.Addrs() {
		if a.Kind != AddrLAN && a.Kind != AddrRelay && manet.IsPublicAddr(a.Multiaddr) {
			out = append(out, a.Multiaddr)
		}
	}
	return out
}

// inferNAT reads the NAT's mapping behaviour from how peers saw us. We listen
// and dial from one port per transport (port reuse), so an endpoint-
// independent NAT shows every observer the same public ip:port, and a
// symmetric one shows different observers different ports. UDP is judged
// first (QUIC is what punches), then TCP; one observer proves nothing.
func inferNAT(obs []Addr) NATType {
	type key struct{ proto, ip string }
	for _, proto := range []string{"udp", "tcp"} {
		ports := map[key]map[string]int{} // ip → port → observers
		for _, o := range obs {
			if o.Kind == AddrLAN || o.Kind == AddrRelay {
				continue
			}
			ip, err := manet.ToIP(o.Multiaddr)
			if err != nil {
				continue
			}
			port, err := o.Multiaddr.ValueForProtocol(protoCode(proto))
			if err != nil {
				continue
			}
			k := key{proto, ip.String()}
			if ports[k] == nil {
				ports[k] = map[string]int{}
			}
			ports[k][port] += o.Observers
		}
		verdict := NATUnknown
		for _, byPort := range ports {
			switch {
			case len(byPort) >= 2:
				return NATSymmetric
			case len(byPort) == 1:
				for _, n := range byPort {
					if n >= 2 {
						verdict = NATCone
					}
				}
			}
		}
		if verdict != NATUnknown {
			return verdict
		}
	}
	return NATUnknown
}

func protoCode(name string) int {
	if name == "udp" {
		return ma.P_UDP
	}
	return ma.P_TCP
}
