package node

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/core/transport"
	"github.com/remora-p2p/remora/testenv"
)

// TestRelayPromotion: a member that is publicly reachable (here forced: in
// the field AutoNAT dial-backs by members decide) and has been up long
// enough offers to relay in its presence; a member behind a NAT reserves a
// slot on it. An opted-out node never offers.
func TestRelayPromotion(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p nodes")
	}
	public, natted, mk := relayAndNatted(t)
	optedOut := mk("optout", func(tn *testNode) {
		tn.tune = func(o *Options) { o.ForceReachability = transport.ReachabilityPublic } // Relay nil
	})
	ctx := context.Background()
	ci, err := public.n.CreateCircle(ctx, api.CreateCircleRequest{Name: "relays"})
	if err != nil {
		t.Fatal(err)
	}
	join(t, public, natted, ci.ID)
	join(t, public, optedOut, ci.ID)
	testenv.WaitFor(t, "AutoNAT's verdict on the relay", 10*time.Second, public.n.relayOffer)
	if optedOut.n.relayOffer() || natted.n.relayOffer() {
		t.Fatalf("relay offers: public %v, opted out %v, natted %v; want only the public one", public.n.relayOffer(), optedOut.n.relayOffer(), natted.n.relayOffer())
	}
	testenv.WaitFor(t, "the natted member reserving a slot on the relay", 30*time.Second, func() bool {
		return slices.Contains(natted.n.tr.Reserved(), public.n.ID())
	})
	if slices.Contains(natted.n.tr.Relays(), optedOut.n.ID()) || slices.Contains(natted.n.tr.Reserved(), optedOut.n.ID()) {
		t.Fatal("a node that opted out is used as a relay")
	}
}

// relayAndNatted starts a member that relays (public, promoted at once) and
// one behind a NAT; mk starts more in the same folder.
func relayAndNatted(t *testing.T) (public, natted *testNode, mk func(string, func(*testNode)) *testNode) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "shared"), 0o755)
	mk = func(name string, tune func(*testNode)) *testNode {
		tn := &testNode{t: t, name: name, state: filepath.Join(root, name), shared: filepath.Join(root, "shared")}
		tune(tn)
		tn.start()
		t.Cleanup(tn.stop)
		return tn
	}
	public = mk("relay", func(tn *testNode) {
		tn.tune = func(o *Options) {
			o.Relay, o.RelayUptime, o.ForceReachability = &transport.RelayOptions{}, time.Millisecond, transport.ReachabilityPublic
		}
	})
	natted = mk("natted", func(tn *testNode) {
		tn.tune = func(o *Options) { o.ForceReachability = transport.ReachabilityPrivate }
	})
	return public, natted, mk
}

// TestRemovedMembersReservationEnds: a member holding a slot on our relay
// loses it when it is removed: the removal closes its connections, which
// ends the reservation, and the relay (and the gater) refuse a new one, so
// its relay address through us goes away.
func TestRemovedMembersReservationEnds(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p nodes")
	}
	public, natted, _ := relayAndNatted(t)
	ctx := context.Background()
	ci, err := public.n.CreateCircle(ctx, api.CreateCircleRequest{Name: "relays"})
	if err != nil {
		t.Fatal(err)
	}
	join(t, public, natted, ci.ID)
	viaRelay := func() bool {
		for _, a := range natted.n.tr.Addrs() {
			if a.Kind == transport.AddrRelay && strings.Contains(a.Multiaddr.String(), public.n.ID().String()) {
				return true
			}
		}
		return false
	}
	testenv.WaitFor(t, "the natted member holding a slot on the relay", 60*time.Second, viaRelay)
	if err := public.n.RemoveMember(ctx, api.MemberRequest{Circle: ci.ID, Who: "natted"}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the removed member's reservation on the relay ended", 30*time.Second, func() bool { return !viaRelay() })
	// It stays ended: the relay's reservation ACL (and the gater) ask the
	// same membership check, which now refuses it.
	if public.n.isMember(natted.n.ID()) {
		t.Fatal("the relay would renew the removed member's reservation")
	}
}

// TestRelayUptimePersisted: relay promotion waits on a stretch of uptime
// that survives a restart (a short gap keeps it) and starts anew after a
// long one.
func TestRelayUptimePersisted(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p nodes")
	}
	var mu sync.Mutex
	cur := time.Now()
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return cur }
	advance := func(d time.Duration) { mu.Lock(); cur = cur.Add(d); mu.Unlock() }
	root := t.TempDir()
	tn := &testNode{t: t, name: "relay", state: filepath.Join(root, "relay"), shared: filepath.Join(root, "shared"), now: now,
		tune: func(o *Options) { o.Relay, o.RelayUptime = &transport.RelayOptions{}, 10*time.Minute }}
	os.MkdirAll(tn.shared, 0o755)
	tn.start()
	t0 := tn.n.relayStatus().UpSince
	if !t0.Equal(now()) {
		t.Fatalf("first start: up since %v, want now (%v)", t0, now())
	}
	advance(15 * time.Minute)
	tn.stop()
	advance(5 * time.Minute) // a restart for an update
	tn.start()
	if got := tn.n.relayStatus().UpSince; !got.Equal(t0.Truncate(time.Millisecond)) {
		t.Fatalf("after a 5-minute gap: up since %v, want the stretch from %v kept", got, t0)
	}
	tn.stop()
	advance(uptimeGap + time.Minute)
	tn.start()
	defer tn.stop()
	if got := tn.n.relayStatus().UpSince; !got.Equal(now()) {
		t.Fatalf("after a gap of %v: up since %v, want a new stretch from now (%v)", uptimeGap+time.Minute, got, now())
	}
}
