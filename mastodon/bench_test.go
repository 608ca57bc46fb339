package mastodon_test

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/node/nodetest"
	"github.com/remora-p2p/remora/mastodon"
	"github.com/remora-p2p/remora/mastodon/mastodontest"
	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/testenv"
	"github.com/remora-p2p/remora/testenv/gotosocial"
)

// BenchmarkColdStart: two fresh nodes whose only common ground is their
// accounts on the fake server: join by invite over direct posts, presence,
// and the first direct (libp2p) connection. Reported per phase:
// join-ms (invite to welcome, on a stock 500-character server: the welcome
// crosses in parts), connect-ms (joined to connected), and
// restart-connect-ms (both nodes restarted, to connected again).
func BenchmarkColdStart(b *testing.B) {
	coldStart(b, func() (a, c *nodetest.Node) {
		_, a, c, _ = circleOverMastodon(b, mastodontest.Options{RateLimit: 5000, StatusLimit: 5000, MaxCharacters: 500})
		return a, c
	}, nil)
}

// BenchmarkColdStartGoToSocial is BenchmarkColdStart through a real server:
// two fresh accounts on GoToSocial (made outside the timer), the adapters
// streaming from it, 30 s polling only as the fallback. Same metrics.
func BenchmarkColdStartGoToSocial(b *testing.B) {
	srv := gotosocial.Need(b)
	var accts []gotosocial.Account
	coldStart(b, func() (a, c *nodetest.Node) {
		a, c, _ = circleOverGoToSocial(b, srv, accts[0], accts[1])
		return a, c
	}, func() { accts = srv.NewAccounts(b, "alice", "bob") })
}

// coldStart times pair (two fresh nodes joined in one circle) and the
// first direct connection, then both restarted; prepare runs before each
// iteration outside the timer.
func coldStart(b *testing.B, pair func() (a, c *nodetest.Node), prepare func()) {
	var join, connect, restart time.Duration
	for range b.N {
		if prepare != nil {
			b.StopTimer()
			prepare()
			b.StartTimer()
		}
		t0 := time.Now()
		a, c := pair()
		t1 := time.Now()
		testenv.WaitFor(b, "connected", time.Minute, func() bool { return nodetest.Connected(a, c) })
		t2 := time.Now()
		a.Stop()
		c.Stop()
		t3 := time.Now()
		a.Start()
		c.Start()
		testenv.WaitFor(b, "reconnected", time.Minute, func() bool { return nodetest.Connected(a, c) })
		t4 := time.Now()
		a.Stop()
		c.Stop()
		join += t1.Sub(t0)
		connect += t2.Sub(t1)
		restart += t4.Sub(t3)
	}
	n := float64(b.N)
	b.ReportMetric(float64(join.Milliseconds())/n, "join-ms")
	b.ReportMetric(float64(connect.Milliseconds())/n, "connect-ms")
	b.ReportMetric(float64((join+connect).Milliseconds())/n, "cold-start-ms")
	b.ReportMetric(float64(restart.Milliseconds())/n, "restart-connect-ms")
}

// BenchmarkDeliver1000 publishes 1000 items from alice to bob through the
// adapters and reports the server requests each side made per 1000
// delivered items. The fake's limits are raised so the run measures
// requests, not waiting; BENCHMARKS.md turns the counts into
// time under the published limits.
func BenchmarkDeliver1000(b *testing.B) {
	for _, mode := range []struct {
		name string
		cfg  map[string]any
	}{
		{"streaming", map[string]any{}},
		{"polling", map[string]any{"stream": "none", "poll_interval": "50ms"}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			const items = 1000
			var pubReq, subReq float64
			var elapsed time.Duration
			for range b.N {
				srv := mastodontest.New(mastodontest.Options{RateLimit: 1 << 20, StatusLimit: 1 << 20})
				alice, bob := srv.AddAccount("alice"), srv.AddAccount("bob")
				open := func(token, other string, extra map[string]any) sdk.Channel {
					cfg := map[string]any{"server": srv.URL, "accounts": []string{other}}
					for k, v := range extra {
						cfg[k] = v
					}
					raw, _ := json.Marshal(cfg)
					ch, err := mastodon.New().Configure(context.Background(), sdk.ConfigureRequest{Config: raw,
						Secrets: map[string]string{mastodon.SecretToken: token}, StateDir: b.TempDir()})
					if err != nil {
						b.Fatal(err)
					}
					return ch
				}
				pub := open(alice.Token, "bob", nil)
				sub := open(bob.Token, "alice", mode.cfg)
				var got atomic.Int64
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				start := time.Now()
				go func() {
					done <- sub.Subscribe(ctx, sdk.SubscribeRequest{}, sdk.SinkFunc(func(_ context.Context, d sdk.Delivery) error {
						if len(d.Data) > 0 && got.Add(1) == items {
							cancel()
						}
						return nil
					}))
				}()
				for i := 0; i < items; i += 20 {
					var batch []sdk.PublishItem
					for range 20 {
						batch = append(batch, item(armored(400)))
					}
					resp, err := pub.Publish(context.Background(), sdk.PublishRequest{Items: batch})
					if err != nil {
						b.Fatal(err)
					}
					for _, r := range resp.Results {
						if r.Err != nil {
							b.Fatal(r.Err)
						}
					}
				}
				select {
				case <-done:
				case <-time.After(2 * time.Minute):
					b.Fatalf("delivered %d of %d", got.Load(), items)
				}
				elapsed += time.Since(start)
				pubReq += float64(pub.(sdk.Healther).Health(context.Background()).Counters["requests"])
				subReq += float64(sub.(sdk.Healther).Health(context.Background()).Counters["requests"])
				cancel()
				pub.Close()
				sub.Close()
				srv.Close()
			}
			n := float64(b.N)
			b.ReportMetric(pubReq/n, "publisher-req/1000")
			b.ReportMetric(subReq/n, "subscriber-req/1000")
			b.ReportMetric(float64(elapsed.Milliseconds())/n, "ms/1000")
		})
	}
}
