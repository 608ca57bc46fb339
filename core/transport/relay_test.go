package transport_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/remora-p2p/remora/core/transport"
)

// relayTrio starts a relay R and two members A and B that reserve on it; B
// knows only A's relay addresses.
func relayTrio(t *testing.T, ro transport.RelayOptions, relayOnly bool) (r, a, b *transport.Transport, m *members) {
	t.Helper()
	m = newMembers()
	r = newTransport(t, m, func(o *transport.Options) {
		o.RelayService = &ro
		o.ForceReachability = transport.ReachabilityPublic
	})
	rinfo := peer.AddrInfo{ID: r.ID()}
	for _, ad := range r.Addrs() {
		rinfo.Addrs = append(rinfo.Addrs, ad.Multiaddr)
	}
	withRelay := func(o *transport.Options) {
		o.StaticRelays = []peer.AddrInfo{rinfo}
		o.EnableHolePunching = true
	}
	onlyRelay := func(o *transport.Options) {
		withRelay(o)
		if relayOnly {
			// A and B may dial only the relay: their path must stay
			// relayed although identify tells each the other's loopback
			// addresses.
			o.DialFilter = func(x ma.Multiaddr) bool {
				for _, ra := range rinfo.Addrs {
					if x.Equal(ra) {
						return true
					}
				}
				return false
			}
		}
	}
	a = newTransport(t, m, onlyRelay)
	b = newTransport(t, m, onlyRelay)
	m.add(r.ID(), a.ID(), b.ID())
	relayAddrs := waitRelayAddrs(t, a)
	b.AddAddrs(a.ID(), relayAddrs, peerstore.TempAddrTTL)
	return r, a, b, m
}

func waitRelayAddrs(t *testing.T, tr *transport.Transport) []ma.Multiaddr {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var out []ma.Multiaddr
		for _, ad := range tr.Addrs() {
			if ad.Kind == transport.AddrRelay {
				out = append(out, ad.Multiaddr)
			}
		}
		if len(out) > 0 {
			return out
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s got no relay reservation", tr.ID())
	return nil
}

func TestRelayedPath(t *testing.T) {
	r, a, b, _ := relayTrio(t, transport.RelayOptions{}, true)
	if got := r.Reachability(); got != transport.ReachabilityPublic {
		t.Errorf("relay reachability %s, want public (forced)", got)
	}
	got := make(chan []byte, 4)
	a.Handle(func(_ context.Context, _ peer.ID, msg []byte) error { got <- msg; return nil })
	ctx := ctxT(t, 30*time.Second)
	path, err := b.Connect(ctx, a.ID())
	if err != nil {
		t.Fatalf("Connect through relay: %v", err)
	}
	if path != transport.PathRelayed {
		t.Fatalf("path = %s, want relayed", path)
	}
	// 1 MiB is 8× libp2p's default 128 KiB circuit limit: the relay's limits
	// are set for real traffic.
	big := bytes.Repeat([]byte{7}, 1<<20)
	for i := range 3 {
		if err := b.Send(ctx, a.ID(), big); err != nil {
			t.Fatalf("Send %d over the relayed path: %v", i, err)
		}
		if m := <-got; !bytes.Equal(m, big) {
			t.Fatalf("message %d corrupted", i)
		}
	}
	if p := a.PathTo(b.ID()); p != transport.PathRelayed {
		t.Errorf("a.PathTo(b) = %s, want relayed", p)
	}
}

func TestRelayLimitsApply(t *testing.T) {
	_, a, b, _ := relayTrio(t, transport.RelayOptions{CircuitData: 32 << 10}, true)
	a.Handle(func(context.Context, peer.ID, []byte) error { return nil })
	ctx := ctxT(t, 30*time.Second)
	if _, err := b.Connect(ctx, a.ID()); err != nil {
		t.Fatalf("Connect through relay: %v", err)
	}
	if err := b.Send(ctx, a.ID(), make([]byte, 1024)); err != nil {
		t.Fatalf("small Send under the limit: %v", err)
	}
	err := b.Send(ctx, a.ID(), make([]byte, 256<<10))
	if err == nil {
		t.Fatal("a 256 KiB message crossed a relay limited to 32 KiB per circuit")
	}
}

func TestRelayRefusesNonMembers(t *testing.T) {
	r, a, _, _ := relayTrio(t, transport.RelayOptions{}, true)
	rinfo := peer.AddrInfo{ID: r.ID()}
	for _, ad := range r.Addrs() {
		rinfo.Addrs = append(rinfo.Addrs, ad.Multiaddr)
	}
	// A stranger that knows the relay and A's relay address, and would
	// admit anyone itself.
	stranger := newTransport(t, newMembers(), func(o *transport.Options) {
		o.Allow = func(peer.ID) bool { return true }
		o.StaticRelays = []peer.AddrInfo{rinfo}
	})
	a.Handle(func(context.Context, peer.ID, []byte) error { return nil })
	stranger.AddAddrs(a.ID(), waitRelayAddrs(t, a), peerstore.TempAddrTTL)
	ctx := ctxT(t, 20*time.Second)
	if _, err := stranger.Connect(ctx, a.ID()); err == nil {
		t.Fatal("a stranger reached a member through the members' relay")
	}
	if err := stranger.Send(ctx, a.ID(), []byte("x")); err == nil || errors.Is(err, transport.ErrRejected) {
		t.Fatalf("stranger Send: err = %v, want a connection failure", err)
	}
	for _, ad := range stranger.Addrs() {
		if ad.Kind == transport.AddrRelay {
			t.Fatalf("the stranger holds a reservation on the members' relay: %s", ad.Multiaddr)
		}
	}
}

func TestRelayedPathUpgradesToDirect(t *testing.T) {
	_, a, b, _ := relayTrio(t, transport.RelayOptions{}, false)
	a.Handle(func(context.Context, peer.ID, []byte) error { return nil })
	ctx := ctxT(t, 30*time.Second)
	path, err := b.Connect(ctx, a.ID())
	if err != nil {
		t.Fatalf("Connect through relay: %v", err)
	}
	if path != transport.PathRelayed {
		t.Fatalf("first path = %s, want relayed (b knew only a's relay address)", path)
	}
	// identify over the relayed connection tells b a's loopback addresses;
	// the upgrade loop dials them.
	e := waitEvent(t, b, transport.EventPathChanged, a.ID(), transport.PathLAN)
	if e.Prev != transport.PathRelayed {
		t.Errorf("upgrade from %s, want relayed", e.Prev)
	}
	if err := b.Send(ctx, a.ID(), []byte("after upgrade")); err != nil {
		t.Fatalf("Send after upgrade: %v", err)
	}
}

func TestAddRemoveRelay(t *testing.T) {
	m := newMembers()
	var later atomic.Int64 // how far the relay's clock is ahead
	r := newTransport(t, m, func(o *transport.Options) {
		o.RelayService = &transport.RelayOptions{ReservationTTL: time.Hour}
		o.ForceReachability = transport.ReachabilityPublic
		o.Clock = func() time.Time { return time.Now().Add(time.Duration(later.Load())) }
	})
	a := newTransport(t, m, nil)
	b := newTransport(t, m, nil)
	m.add(r.ID(), a.ID(), b.ID())
	rinfo := peer.AddrInfo{ID: r.ID()}
	for _, ad := range r.Addrs() {
		rinfo.Addrs = append(rinfo.Addrs, ad.Multiaddr)
	}
	if err := a.AddRelay(peer.AddrInfo{ID: r.ID()}); !errors.Is(err, transport.ErrNoAddrs) {
		t.Fatalf("AddRelay without addresses: err = %v, want ErrNoAddrs", err)
	}
	if err := a.AddRelay(peer.AddrInfo{ID: a.ID(), Addrs: rinfo.Addrs}); err == nil {
		t.Fatal("AddRelay accepted ourselves")
	}
	if err := a.AddRelay(rinfo); err != nil {
		t.Fatal(err)
	}
	if got := a.Relays(); len(got) != 1 || got[0] != r.ID() {
		t.Fatalf("Relays = %v", got)
	}
	relayAddrs := waitRelayAddrs(t, a)
	// both ends list the reservation (doctor: "relayed by", "relays for")
	if got := a.Reserved(); !slices.Equal(got, []peer.ID{r.ID()}) {
		t.Fatalf("a.Reserved = %v, want the relay", got)
	}
	if got := r.Served(); !slices.Equal(got, []peer.ID{a.ID()}) {
		t.Fatalf("r.Served = %v, want a alone (b reserved nothing)", got)
	}
	a.Handle(func(context.Context, peer.ID, []byte) error { return nil })
	b.AddAddrs(a.ID(), relayAddrs, peerstore.TempAddrTTL)
	ctx := ctxT(t, 20*time.Second)
	if err := b.Send(ctx, a.ID(), []byte("via a relay added at run time")); err != nil {
		t.Fatalf("Send through the added relay: %v", err)
	}
	a.RemoveRelay(r.ID())
	if got := a.Relays(); len(got) != 0 {
		t.Fatalf("Relays after RemoveRelay = %v", got)
	}
	if got := a.Reserved(); len(got) != 0 {
		t.Fatalf("Reserved after RemoveRelay = %v", got)
	}
	// a reservation nobody refreshed for its life is no longer served
	later.Store(int64(time.Hour + time.Minute))
	if got := r.Served(); len(got) != 0 {
		t.Fatalf("r.Served an hour after the last reservation = %v", got)
	}
	for _, ad := range a.Addrs() {
		if ad.Kind == transport.AddrRelay {
			t.Fatalf("relay address %s still advertised after RemoveRelay", ad.Multiaddr)
		}
	}
}
