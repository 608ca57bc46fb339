package transport

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

func TestGuessTCP(t *testing.T) {
	listen := []ma.Multiaddr{ma.StringCast("/ip4/0.0.0.0/udp/4002/quic-v1"), ma.StringCast("/ip4/0.0.0.0/tcp/4003")}
	obs := func(s string, k AddrKind) Addr { return Addr{Multiaddr: ma.StringCast(s), Kind: k, Observers: 1} }
	tests := []struct {
		name string
		obs  []Addr
		want []string
	}{
		{"port kept", []Addr{obs("/ip4/8.8.8.8/udp/4002/quic-v1", AddrObserved)}, []string{"/ip4/8.8.8.8/tcp/4003"}},
		{"port changed: nothing to guess from", []Addr{obs("/ip4/8.8.8.8/udp/51000/quic-v1", AddrObserved)}, nil},
		{"LAN observation", []Addr{obs("/ip4/192.168.1.2/udp/4002/quic-v1", AddrLAN)}, nil},
		{"twice the same", []Addr{obs("/ip4/8.8.8.8/udp/4002/quic-v1", AddrObserved), obs("/ip4/8.8.8.8/udp/4002/quic-v1/webtransport", AddrObserved)}, []string{"/ip4/8.8.8.8/tcp/4003"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := guessTCP(tt.obs, listen)
			if len(got) != len(tt.want) {
				t.Fatalf("guessTCP = %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i].String() != tt.want[i] {
					t.Fatalf("guessTCP = %v, want %v", got, tt.want)
				}
			}
		})
	}
}

// TestDCUtRSessions checks that two sessions of a pair never run with
// opposite roles: when both ends initiate at once, the lower peer ID's
// session goes on.
func TestDCUtRSessions(t *testing.T) {
	const lo, hi = peer.ID("a-lower"), peer.ID("b-higher")
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		run  func(l, h *dcutrSessions) bool
	}{
		{"both initiate: the lower refuses the higher's, the higher takes the lower's", func(l, h *dcutrSessions) bool {
			return l.beginInitiate(hi, now) && h.beginInitiate(lo, now) &&
				!l.beginReceive(lo, hi, now) && h.beginReceive(hi, lo, now)
		}},
		{"a receiver does not initiate", func(l, h *dcutrSessions) bool {
			return l.beginReceive(lo, hi, now) && !l.beginInitiate(hi, now)
		}},
		{"after the receiver's session it may initiate", func(l, h *dcutrSessions) bool {
			ok := l.beginReceive(lo, hi, now)
			l.endReceive(hi)
			return ok && l.beginInitiate(hi, now)
		}},
		{"an ended or stale initiation refuses nothing", func(l, h *dcutrSessions) bool {
			l.beginInitiate(hi, now)
			l.endInitiate(hi)
			ended := l.beginReceive(lo, hi, now)
			l.endReceive(hi)
			l.beginInitiate(hi, now)
			return ended && l.beginReceive(lo, hi, now.Add(dcutrMaxSession))
		}},
	}
	tcp := []ma.Multiaddr{ma.StringCast("/ip4/8.8.8.8/tcp/4001")}
	quic := []ma.Multiaddr{ma.StringCast("/ip4/8.8.8.8/udp/4001/quic-v1")}
	tests = append(tests, []struct {
		name string
		run  func(l, h *dcutrSessions) bool
	}{
		{"a plain TCP dial makes us send the first SYN, for staleMapping", func(l, _ *dcutrSessions) bool {
			l.trackPlain(hi, tcp, now, func() {})()
			return l.dialedTCP(hi, now.Add(time.Second)) && !l.dialedTCP(hi, now.Add(staleMapping)) && !l.dialedTCP(lo, now)
		}},
		{"a plain dial without a public TCP address does not", func(l, _ *dcutrSessions) bool {
			l.trackPlain(hi, append(quic, ma.StringCast("/ip4/192.168.1.2/tcp/4001")), now, func() {})()
			return !l.dialedTCP(hi, now)
		}},
		{"the initiator cancels plain dials still running", func(l, _ *dcutrSessions) bool {
			cancelled := false
			var untrack func()
			untrack = l.trackPlain(hi, tcp, now, func() { cancelled = true; go untrack() })
			l.stopPlain(hi, time.Minute)
			return cancelled
		}},
	}...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.run(&dcutrSessions{}, &dcutrSessions{}) {
				t.Fatal("unexpected verdict")
			}
		})
	}
}
