package transport

import (
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		addr    string
		onIface bool
		want    AddrKind
	}{
		{"/ip4/127.0.0.1/tcp/4001", true, AddrLAN},
		{"/ip4/192.168.1.10/udp/4001/quic-v1", true, AddrLAN},
		{"/ip4/10.0.0.2/tcp/4001", false, AddrLAN},
		{"/ip4/100.64.0.1/tcp/4001", false, AddrLAN}, // CGNAT
		{"/ip4/169.254.1.1/tcp/4001", true, AddrLAN},
		{"/ip6/fe80::1/tcp/4001", true, AddrLAN},
		{"/ip6/fd00::1/tcp/4001", true, AddrLAN},
		{"/ip4/203.0.113.5/tcp/4001", false, AddrLAN}, // TEST-NET-3 is not public outside the lab
		{"/ip4/8.8.8.8/udp/4001/quic-v1", true, AddrPublic},
		{"/ip4/8.8.8.8/udp/4001/quic-v1", false, AddrObserved},
		{"/ip6/2001:4860::1/tcp/4001", false, AddrObserved},
		{"/ip4/8.8.8.8/tcp/4001/p2p/12D3KooWCg7fzWaT8cnND3xGWs586vu8mbPqvCAgqQEzkxAMb6DQ/p2p-circuit", false, AddrRelay},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%v", tt.addr, tt.onIface), func(t *testing.T) {
			if got := classify(ma.StringCast(tt.addr), tt.onIface); got != tt.want {
				t.Fatalf("classify = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestObservedAddrs(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	tr := &Transport{now: func() time.Time { return now }, observed: map[string]*obsAddr{}}
	pub := ma.StringCast("/ip4/8.8.8.8/udp/4001/quic-v1")
	tr.addObserved("peer1", pub)
	tr.addObserved("peer2", pub)
	tr.addObserved("peer2", pub) // the same observer twice counts once
	tr.addObserved("peer3", nil)
	tr.addObserved("peer4", ma.StringCast("/ip4/8.8.8.8/tcp/1/p2p/12D3KooWCg7fzWaT8cnND3xGWs586vu8mbPqvCAgqQEzkxAMb6DQ/p2p-circuit"))
	got := tr.observedAddrs()
	if len(got) != 1 || got[0].Observers != 2 || got[0].Kind != AddrObserved || !got[0].ObservedAt.Equal(now) {
		t.Fatalf("observed = %+v, want one address with 2 observers", got)
	}
	// Reports age out.
	now = now.Add(observedTTL + time.Minute)
	if got := tr.observedAddrs(); len(got) != 0 {
		t.Fatalf("after the TTL: %+v, want none", got)
	}
	// Bounded: a flood of distinct addresses stops at maxObserved, and old
	// ones make room.
	for i := range 2 * maxObserved {
		tr.addObserved(peer.ID(fmt.Sprint("p", i)), ma.StringCast(fmt.Sprintf("/ip4/8.8.4.4/tcp/%d", 1000+i)))
	}
	if n := len(tr.observed); n != maxObserved {
		t.Fatalf("%d observed addresses kept, want %d", n, maxObserved)
	}
}

func TestInferNAT(t *testing.T) {
	obs := func(addr string, observers int) Addr {
		a := ma.StringCast(addr)
		return Addr{Multiaddr: a, Kind: classify(a, false), Observers: observers}
	}
	tests := []struct {
		name string
		obs  []Addr
		want NATType
	}{
		{"nothing", nil, NATUnknown},
		{"one observer", []Addr{obs("/ip4/8.8.8.8/udp/4001/quic-v1", 1)}, NATUnknown},
		{"two observers, one mapping", []Addr{obs("/ip4/8.8.8.8/udp/4001/quic-v1", 2)}, NATCone},
		{"two mappings of one IP", []Addr{obs("/ip4/8.8.8.8/udp/40123/quic-v1", 1), obs("/ip4/8.8.8.8/udp/51234/quic-v1", 1)}, NATSymmetric},
		{"UDP decides before TCP", []Addr{
			obs("/ip4/8.8.8.8/udp/4001/quic-v1", 3),
			obs("/ip4/8.8.8.8/tcp/1111", 1), obs("/ip4/8.8.8.8/tcp/2222", 1),
		}, NATCone},
		{"TCP when UDP says nothing", []Addr{obs("/ip4/8.8.8.8/tcp/1111", 1), obs("/ip4/8.8.8.8/tcp/2222", 1)}, NATSymmetric},
		{"LAN and relay addresses ignored", []Addr{
			obs("/ip4/192.168.1.2/udp/1/quic-v1", 5), obs("/ip4/192.168.1.2/udp/2/quic-v1", 5),
		}, NATUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := inferNAT(tt.obs); got != tt.want {
				t.Fatalf("inferNAT = %s, want %s", got, tt.want)
			}
		})
	}
}
