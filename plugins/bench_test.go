package plugins_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/remora-p2p/remora/dir"
	"github.com/remora-p2p/remora/plugins"
	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/host"
	"github.com/remora-p2p/remora/sdk/host/hosttest"
)

// benchSize is the envelope size the targets are stated at.
const benchSize = 1024

// benchAdapter is one adapter under benchmark.
type benchAdapter struct {
	name    string // built-in name the test binary serves (TestMain)
	adapter sdk.Adapter
	config  func(b *testing.B) sdk.ConfigureRequest
}

var benchAdapters = []benchAdapter{
	{"mem", hosttest.New(), func(b *testing.B) sdk.ConfigureRequest {
		return sdk.ConfigureRequest{ChannelID: "bench", Config: []byte(`{"noop":true}`)}
	}},
	{"dir", dir.New(), func(b *testing.B) sdk.ConfigureRequest {
		return sdk.ConfigureRequest{ChannelID: "bench", StateDir: b.TempDir(),
			Config: []byte(fmt.Sprintf(`{"path":%q}`, b.TempDir()))}
	}},
}

// BenchmarkPublish measures envelopes/s and per-call latency of Publish
// with 1 KiB envelopes, batched (64) and unary (1), through three paths in
// the same run: inproc (a Go call), rawgrpc (gRPC on a unix socket in this
// process, sdk.ServeListener + host.Dial) and plugin (a go-plugin
// subprocess with AutoMTLS, through the Supervisor, as remora runs it).
// For plugin it also reports the adapter process's RSS.
func BenchmarkPublish(b *testing.B) {
	for _, ba := range benchAdapters {
		b.Run(ba.name, func(b *testing.B) {
			s := plugins.New(plugins.Options{Builtins: []string{"mem", "dir"}, Logger: quietLogger()})
			defer s.Close()
			pch, err := s.Open(context.Background(), ba.name, ba.config(b))
			if err != nil {
				b.Fatal(err)
			}
			raw, err := host.ServeInProcess(ba.adapter, quietLogger())
			if err != nil {
				b.Fatal(err)
			}
			defer raw.Close()
			rch, err := raw.Configure(context.Background(), ba.config(b))
			if err != nil {
				b.Fatal(err)
			}
			defer rch.Close()
			req := ba.config(b)
			req.Logger = quietLogger()
			ich, err := ba.adapter.Configure(context.Background(), req)
			if err != nil {
				b.Fatal(err)
			}
			defer ich.Close()

			targets := []struct {
				name string
				ch   sdk.Channel
			}{{"inproc", ich}, {"rawgrpc", rch}, {"plugin", pch}}
			for _, batch := range []int{64, 1} {
				for _, tg := range targets {
					b.Run(fmt.Sprintf("batch=%d/%s", batch, tg.name), func(b *testing.B) {
						benchPublish(b, tg.ch, batch)
						if tg.name == "plugin" {
							reportRSS(b, s)
						}
					})
				}
			}
			for _, tg := range targets {
				b.Run("batch=64x4/"+tg.name, func(b *testing.B) { benchPublishParallel(b, tg.ch, 64, 4) })
			}
		})
	}
}

func benchPublish(b *testing.B, ch sdk.Channel, batch int) {
	lat := hosttest.PublishBatches(b, ch, batch, benchSize)
	b.ReportMetric(float64(len(lat)*batch)/b.Elapsed().Seconds(), "envelopes/s")
	reportLatency(b, lat)
}

// benchPublishParallel is benchPublish with several batches in flight at
// once (publishers goroutines), as a core that pipelines its outbox would.
func benchPublishParallel(b *testing.B, ch sdk.Channel, batch, publishers int) {
	var mu sync.Mutex
	var lat []time.Duration
	b.SetBytes(int64(batch * benchSize))
	b.SetParallelism((publishers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		items := make([]sdk.PublishItem, batch)
		for i := range items {
			items[i].Data = make([]byte, benchSize)
			rand.Read(items[i].Data)
		}
		key := make([]byte, 12)
		var mine []time.Duration
		for pb.Next() {
			for i := range items {
				rand.Read(key)
				items[i].IdempotencyKey = hex.EncodeToString(key)
			}
			t0 := time.Now()
			resp, err := ch.Publish(context.Background(), sdk.PublishRequest{Items: items})
			mine = append(mine, time.Since(t0))
			if err != nil {
				b.Error(err)
				return
			}
			for _, r := range resp.Results {
				if r.Err != nil {
					b.Error(r.Err)
					return
				}
			}
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	b.StopTimer()
	if len(lat) == 0 {
		return
	}
	b.ReportMetric(float64(len(lat)*batch)/b.Elapsed().Seconds(), "envelopes/s")
	reportLatency(b, lat)
}

// reportRSS reports the adapter process's resident and peak memory.
func reportRSS(b *testing.B, s *plugins.Supervisor) {
	pid := s.Health(context.Background())[0].Pid
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Logf("rss: %v", err)
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		if err == nil {
			b.ReportMetric(float64(kb)/1024, "adapter-"+strings.TrimPrefix(k, "Vm")+"-MB")
		}
	}
}

// subscribeItems is how many stored envelopes one Subscribe op reads.
const subscribeItems = 10000

// BenchmarkSubscribe measures deliveries/s of a Subscribe stream of 1 KiB
// envelopes from the mem adapter over the same three paths as
// BenchmarkPublish: one op reads 10,000 stored envelopes from the start.
func BenchmarkSubscribe(b *testing.B) {
	s := plugins.New(plugins.Options{Builtins: []string{"mem"}, Logger: quietLogger()})
	defer s.Close()
	raw, err := host.ServeInProcess(hosttest.New(), quietLogger())
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	inproc, err := hosttest.New().Configure(context.Background(), sdk.ConfigureRequest{ChannelID: "sub", Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	rch, err := raw.Configure(context.Background(), sdk.ConfigureRequest{ChannelID: "sub"})
	if err != nil {
		b.Fatal(err)
	}
	pch, err := s.Open(context.Background(), "mem", sdk.ConfigureRequest{ChannelID: "sub"})
	if err != nil {
		b.Fatal(err)
	}
	targets := []struct {
		name string
		ch   sdk.Channel
	}{{"inproc", inproc}, {"rawgrpc", rch}, {"plugin", pch}}
	items := make([]sdk.PublishItem, 250)
	for i := range items {
		items[i].Data = make([]byte, benchSize)
		rand.Read(items[i].Data)
	}
	for _, tg := range targets {
		for range subscribeItems / len(items) {
			if _, err := tg.ch.Publish(context.Background(), sdk.PublishRequest{Items: items}); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, tg := range targets {
		b.Run(tg.name, func(b *testing.B) {
			b.SetBytes(subscribeItems * benchSize)
			for b.Loop() {
				ctx, cancel := context.WithCancel(context.Background())
				got := 0
				err := tg.ch.Subscribe(ctx, sdk.SubscribeRequest{}, sdk.SinkFunc(func(context.Context, sdk.Delivery) error {
					got++
					if got == subscribeItems {
						cancel()
					}
					return nil
				}))
				cancel()
				if got != subscribeItems {
					b.Fatalf("delivered %d of %d (%v)", got, subscribeItems, err)
				}
			}
			b.ReportMetric(float64(b.N*subscribeItems)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

// reportLatency reports the median and 99th percentile of lat in µs.
func reportLatency(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(q(0.50), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
}
