package peerstore_test

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	p2ptest "github.com/libp2p/go-libp2p/core/test"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/remora-p2p/remora/core/peerstore"
	"github.com/remora-p2p/remora/core/store"
)

// txCounter counts the backend's transactions.
type txCounter struct {
	peerstore.Backend
	n atomic.Int64
}

func (c *txCounter) Apply(ctx context.Context, puts map[string][]byte, deletes []string) error {
	c.n.Add(1)
	return c.Backend.Apply(ctx, puts, deletes)
}

// BenchmarkAdd is peer exchange's write to the cache: one Add of a member's
// two addresses, round the 150 members of a large circle, on the bbolt
// backend (fsync per transaction). flush-each flushes after every Add, one
// transaction per change as the cache wrote before it coalesced; coalesced
// leaves the writes to the scheduled flush (1 s) and flushes once at the
// end. parallel runs Adds from GOMAXPROCS goroutines, as stream handlers do.
func BenchmarkAdd(b *testing.B) {
	ids := make([]peer.ID, 150)
	for i := range ids {
		ids[i] = p2ptest.RandPeerIDFatal(b)
	}
	addrs := []peerstore.Addr{
		{Addr: ma.StringCast("/ip4/198.51.100.1/udp/4001/quic-v1"), Kind: "public", Source: "pex"},
		{Addr: ma.StringCast("/ip4/192.168.1.2/tcp/4001"), Kind: "lan", Source: "pex"},
	}
	for _, mode := range []struct {
		name      string
		flushEach bool
		parallel  bool
	}{
		{name: "flush-each", flushEach: true},
		{name: "coalesced"},
		{name: "flush-each/parallel", flushEach: true, parallel: true},
		{name: "coalesced/parallel", parallel: true},
	} {
		b.Run(mode.name, func(b *testing.B) {
			ctx := context.Background()
			db, err := store.Open(filepath.Join(b.TempDir(), "remora.db"), store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			be := &txCounter{Backend: db.PeerCache()}
			s, err := peerstore.New(ctx, be, peerstore.Options{})
			if err != nil {
				b.Fatal(err)
			}
			var i atomic.Int64
			op := func() {
				if err := s.Add(ids[i.Add(1)%int64(len(ids))], addrs); err != nil {
					b.Fatal(err)
				}
				if mode.flushEach {
					if err := s.Flush(ctx); err != nil {
						b.Fatal(err)
					}
				}
			}
			if mode.parallel {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						op()
					}
				})
			} else {
				for b.Loop() {
					op()
				}
			}
			if err := s.Close(ctx); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(be.n.Load())/float64(b.N), "txns/op")
		})
	}
}
