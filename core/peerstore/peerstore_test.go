package peerstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	p2ptest "github.com/libp2p/go-libp2p/core/test"
	ma "github.com/multiformats/go-multiaddr"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func mustAddr(s string) ma.Multiaddr { return ma.StringCast(s) }

func TestAddScoreAndOrder(t *testing.T) {
	ctx := context.Background()
	clk := &fakeClock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	be := NewMemoryBackend()
	s, err := New(ctx, be, Options{Clock: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	p := p2ptest.RandPeerIDFatal(t)
	lan := mustAddr("/ip4/192.168.1.5/udp/4001/quic-v1")
	pub := mustAddr("/ip4/198.51.100.7/udp/4001/quic-v1")
	rel := mustAddr("/ip4/203.0.113.9/tcp/4001/p2p/" + p2ptest.RandPeerIDFatal(t).String() + "/p2p-circuit")
	if err := s.Add(p, []Addr{
		{Addr: lan, Kind: "lan", Source: "mdns"},
		{Addr: pub, Kind: "observed", Source: "presence", Expires: clk.t.Add(time.Hour)},
		{Addr: rel, Kind: "relay", Source: "presence"},
		{Addr: nil},
	}); err != nil {
		t.Fatal(err)
	}
	if got := len(s.Addrs(p)); got != 3 {
		t.Fatalf("%d addrs, want 3", got)
	}
	s.Failure(p, lan)
	s.Success(p, rel, 40*time.Millisecond)
	s.Success(p, pub, 10*time.Millisecond)
	s.Success(p, pub, 12*time.Millisecond)
	best := s.Best(p, 0)
	want := []ma.Multiaddr{pub, rel, lan}
	for i := range want {
		if !best[i].Equal(want[i]) {
			t.Fatalf("order %v, want %v", best, want)
		}
	}
	if got := s.Best(p, 1); len(got) != 1 || !got[0].Equal(pub) {
		t.Fatalf("Best(p, 1) = %v", got)
	}
	a := s.Addrs(p)[0]
	if a.Successes != 2 || a.RTT != 12*time.Millisecond || !a.LastSuccess.Equal(clk.t) || a.Score != 0.875 {
		t.Fatalf("health of %s = %+v", pub, a)
	}
	// Re-adding keeps health, updates provenance.
	if err := s.Add(p, []Addr{{Addr: pub, Kind: "mapped", Source: "pex", Expires: clk.t.Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	if a := s.Addrs(p)[0]; a.Score != 0.875 || a.Kind != "mapped" || a.Source != "pex" {
		t.Fatalf("after re-add: %+v", a)
	}

	// Persisted: a new store on the same backend sees the same.
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	s2, err := New(ctx, be, Options{Clock: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	got := s2.Addrs(p)
	if len(got) != 3 || !got[0].Addr.Equal(pub) || got[0].Score != 0.875 || got[0].RTT != 12*time.Millisecond || got[2].Failures != 1 {
		t.Fatalf("reloaded %+v", got)
	}

	// Expiry hides, Prune removes.
	clk.t = clk.t.Add(2 * time.Hour)
	if got := s2.Best(p, 0); len(got) != 2 {
		t.Fatalf("after expiry %v, want 2 addrs", got)
	}
	if n := s2.Prune(0); n != 1 {
		t.Fatalf("Prune = %d; want 1", n)
	}
	s2.Forget(p)
	if err := s2.Close(ctx); err != nil {
		t.Fatal(err)
	}
	s3, _ := New(ctx, be, Options{})
	if len(s3.Peers()) != 0 {
		t.Fatalf("forgotten peer still stored: %v", s3.Peers())
	}
}

func TestBounds(t *testing.T) {
	ctx := context.Background()
	s, _ := New(ctx, NewMemoryBackend(), Options{})
	p := p2ptest.RandPeerIDFatal(t)
	var addrs []Addr
	for i := range MaxAddrsPerPeer + 10 {
		addrs = append(addrs, Addr{Addr: mustAddr(fmt.Sprintf("/ip4/198.51.100.1/tcp/%d", 1000+i))})
	}
	if err := s.Add(p, addrs[:MaxAddrsPerPeer]); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(p, addrs[MaxAddrsPerPeer:]); err != nil {
		t.Fatal(err)
	}
	if got := len(s.Addrs(p)); got != MaxAddrsPerPeer {
		t.Fatalf("%d addrs kept, want %d", got, MaxAddrsPerPeer)
	}
	for i := range MaxPeers - 1 {
		if err := s.Add(peer.ID(fmt.Sprint(i)), addrs[:1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Add(p2ptest.RandPeerIDFatal(t), addrs[:1]); !errors.Is(err, ErrFull) {
		t.Fatalf("Add past MaxPeers: err = %v, want ErrFull", err)
	}
	if err := s.Add(p, addrs[:1]); err != nil {
		t.Fatalf("Add to a known peer when full: %v", err)
	}
}

func TestLoadSkipsBadRecords(t *testing.T) {
	ctx := context.Background()
	be := NewMemoryBackend()
	good := p2ptest.RandPeerIDFatal(t)
	other := p2ptest.RandPeerIDFatal(t)
	val, _ := encodeRecord(good, []*Addr{{Addr: mustAddr("/ip4/198.51.100.1/tcp/1"), Score: 0.5}}, 0)
	be.Apply(ctx, map[string][]byte{
		string(good):                       val,
		"junk-key":                         []byte("{not json"),
		string(other):                      val, // record of good under other's key
		string(p2ptest.RandPeerIDFatal(t)): []byte(`{"v":2,"peer":"x"}`),
	}, nil)
	s, err := New(ctx, be, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Skipped() != 3 {
		t.Errorf("Skipped = %d, want 3", s.Skipped())
	}
	if ps := s.Peers(); len(ps) != 1 || ps[0] != good {
		t.Fatalf("Peers = %v, want only %s", ps, good)
	}
	// Skipped records are left alone in the backend: nothing is lost.
	n := 0
	be.Load(ctx, func(_, _ []byte) error { n++; return nil })
	if n != 4 {
		t.Fatalf("backend holds %d records, want 4", n)
	}
}

func TestDecodeRecordSanitizes(t *testing.T) {
	p := p2ptest.RandPeerIDFatal(t)
	in := fmt.Sprintf(`{"v":1,"peer":%q,"addrs":[{"a":"not-a-multiaddr"},{"a":"/ip4/198.51.100.1/tcp/1","score":7,"ok":-3,"rtt_us":-5}]}`, p)
	got, addrs, _, err := decodeRecord([]byte(p), []byte(in))
	if err != nil || got != p {
		t.Fatalf("decode: %v", err)
	}
	if len(addrs) != 1 || addrs[0].Score != neutralScore || addrs[0].Successes != 0 || addrs[0].RTT != 0 {
		t.Fatalf("not sanitized: %+v", addrs)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	p, _ := peer.Decode("12D3KooWCg7fzWaT8cnND3xGWs586vu8mbPqvCAgqQEzkxAMb6DQ")
	val, _ := encodeRecord(p, []*Addr{{Addr: mustAddr("/ip4/198.51.100.1/udp/4001/quic-v1"), Kind: "observed", Score: 0.9, Successes: 3}}, time.Minute)
	f.Add([]byte(p), val)
	f.Add([]byte(p), []byte(`{"v":1,"peer":"12D3KooWCg7fzWaT8cnND3xGWs586vu8mbPqvCAgqQEzkxAMb6DQ","addrs":[{"a":"/ip4/1.2.3.4/tcp/1","score":"NaN"}]}`))
	f.Add([]byte("x"), []byte(`{"v":1}`))
	f.Fuzz(func(t *testing.T, key, value []byte) {
		got, addrs, up, err := decodeRecord(key, value)
		if err != nil {
			return
		}
		if string(got) != string(key) {
			t.Fatalf("decoded peer %q under key %q", got, key)
		}
		if len(addrs) > MaxAddrsPerPeer {
			t.Fatalf("%d addrs", len(addrs))
		}
		for _, a := range addrs {
			if a.Addr == nil || math.IsNaN(a.Score) || a.Score < 0 || a.Score > 1 || a.Successes < 0 || a.Failures < 0 || a.RTT < 0 {
				t.Fatalf("unsanitized %+v", a)
			}
		}
		// What decodes re-encodes and decodes to the same.
		if up < 0 {
			t.Fatalf("uptime %v", up)
		}
		again, err := encodeRecord(got, addrs, up)
		if err != nil {
			t.Fatal(err)
		}
		if _, addrs2, _, err := decodeRecord(key, again); err != nil || len(addrs2) != len(addrs) {
			t.Fatalf("re-decode: %d addrs, %v", len(addrs2), err)
		}
	})
}

// TestDecayPruneUptime: a verdict fades with the half-life, the dial order
// follows the effective scores, an address nobody announced or reached for
// MaxAge is pruned, and uptime survives a reload.
func TestDecayPruneUptime(t *testing.T) {
	ctx := context.Background()
	clk := &fakeClock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	be := NewMemoryBackend()
	s, err := New(ctx, be, Options{Clock: clk.now, HalfLife: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	good, bad, fresh := p2ptest.RandPeerIDFatal(t), p2ptest.RandPeerIDFatal(t), p2ptest.RandPeerIDFatal(t)
	ga, ba, fa := mustAddr("/ip4/198.51.100.1/tcp/1"), mustAddr("/ip4/198.51.100.2/tcp/1"), mustAddr("/ip4/198.51.100.3/tcp/1")
	for p, a := range map[peer.ID]ma.Multiaddr{good: ga, bad: ba, fresh: fa} {
		if err := s.Add(p, []Addr{{Addr: a, Source: "pex"}}); err != nil {
			t.Fatal(err)
		}
	}
	s.Success(good, ga, time.Millisecond)
	s.Failure(bad, ba)
	order := func() []peer.ID {
		var out []peer.ID
		for _, p := range s.ByScore() {
			out = append(out, p.ID)
		}
		return out
	}
	if got := order(); got[0] != good || got[2] != bad {
		t.Fatalf("dial order %v, want good first and bad last", got)
	}
	// One half-life later the verdicts weigh half as much.
	clk.t = clk.t.Add(time.Hour)
	if a := s.Addrs(good)[0]; math.Abs(a.Score-0.625) > 1e-9 {
		t.Fatalf("good after one half-life: %v, want 0.625", a.Score)
	}
	if a := s.Addrs(bad)[0]; math.Abs(a.Score-0.375) > 1e-9 {
		t.Fatalf("bad after one half-life: %v, want 0.375", a.Score)
	}
	// A success now builds on the faded score, not on the old one.
	s.Success(good, ga, time.Millisecond)
	if a := s.Addrs(good)[0]; math.Abs(a.Score-0.8125) > 1e-9 {
		t.Fatalf("good after a new success: %v, want 0.8125", a.Score)
	}
	s.AddUptime(good, 90*time.Second)
	// Announced (fresh) or reached (good) again: they stay; bad, neither
	// announced nor reached for two days, goes.
	clk.t = clk.t.Add(47 * time.Hour)
	s.Add(fresh, []Addr{{Addr: fa, Source: "pex"}})
	s.Success(good, ga, time.Millisecond)
	if n := s.Prune(24 * time.Hour); n != 1 {
		t.Fatalf("Prune = %d; want 1 (bad's address)", n)
	}
	if got := s.Peers(); len(got) != 2 || slices.Contains(got, bad) || !slices.Contains(got, good) {
		t.Fatalf("after prune %v", got)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	s2, _ := New(ctx, be, Options{Clock: clk.now, HalfLife: time.Hour})
	var up time.Duration
	for _, p := range s2.ByScore() {
		if p.ID == good {
			up = p.Uptime
		}
	}
	if up != 90*time.Second {
		t.Fatalf("uptime after reload %v, want 1m30s", up)
	}
	if n := s2.Retain(func(p peer.ID) bool { return p == good }); n != 1 || len(s2.Peers()) != 1 {
		t.Fatalf("Retain dropped %d, left %v", n, s2.Peers())
	}
}
