package dir_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/remora-p2p/remora/dir"
	"github.com/remora-p2p/remora/sdk"
)

const benchSize = 1024

func benchItems(n int) []sdk.PublishItem {
	items := make([]sdk.PublishItem, n)
	for i := range items {
		data := make([]byte, benchSize)
		rand.Read(data)
		k := make([]byte, 16)
		rand.Read(k)
		items[i] = sdk.PublishItem{Data: data, IdempotencyKey: hex.EncodeToString(k)}
	}
	return items
}

// BenchmarkPublish publishes 1 KiB envelopes in batches of 64; every file
// is written atomically and fsynced, and each batch fsyncs its bucket.
func BenchmarkPublish(b *testing.B) {
	ch := mustConfigureB(b, benchDir(b))
	items := benchItems(64)
	n := 0
	start := time.Now()
	for b.Loop() {
		for i := range items {
			rand.Read(items[i].Data[:8])
			k := make([]byte, 16)
			rand.Read(k)
			items[i].IdempotencyKey = hex.EncodeToString(k)
		}
		resp, err := ch.Publish(context.Background(), sdk.PublishRequest{Items: items})
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range resp.Results {
			if r.Err != nil {
				b.Fatal(r.Err)
			}
		}
		n += len(items)
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "envelopes/s")
}

// BenchmarkSubscribe delivers 4096 envelopes of 1 KiB from the start:
// "cold" with an empty state dir (scan, index and fsync the index, then
// read every file), "warm" with the index already built.
func BenchmarkSubscribe(b *testing.B) {
	const total = 4096
	folder := benchDir(b)
	ch := mustConfigureB(b, folder)
	for range total / 64 {
		if _, err := ch.Publish(context.Background(), sdk.PublishRequest{Items: benchItems(64)}); err != nil {
			b.Fatal(err)
		}
	}
	ch.Close()
	run := func(b *testing.B, state func() string) {
		n := 0
		var elapsed time.Duration
		for b.Loop() {
			st := state()
			start := time.Now()
			ch := mustConfigureAt(b, folder, st)
			ctx, cancel := context.WithCancel(context.Background())
			got := 0
			err := ch.Subscribe(ctx, sdk.SubscribeRequest{}, sdk.SinkFunc(func(context.Context, sdk.Delivery) error {
				if got++; got == total {
					cancel()
				}
				return nil
			}))
			elapsed += time.Since(start)
			cancel()
			ch.Close()
			if got != total {
				b.Fatalf("delivered %d of %d: %v", got, total, err)
			}
			n += total
		}
		b.ReportMetric(float64(n)/elapsed.Seconds(), "envelopes/s")
	}
	b.Run("cold", func(b *testing.B) { run(b, func() string { return benchDir(b) }) })
	warm := benchDir(b)
	mustConfigureAt(b, folder, warm).Close() // builds the index
	b.Run("warm", func(b *testing.B) { run(b, func() string { return warm }) })
}

// benchDir is a fresh folder for a benchmark: under $REMORA_DIR_BENCH_ROOT
// when set (e.g. /dev/shm, to measure dir without the disk), else in
// b.TempDir.
func benchDir(b *testing.B) string {
	root := os.Getenv("REMORA_DIR_BENCH_ROOT")
	if root == "" {
		return b.TempDir()
	}
	d, err := os.MkdirTemp(root, "dirbench")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func mustConfigureB(b *testing.B, folder string) sdk.Channel {
	ch := mustConfigureAt(b, folder, benchDir(b))
	b.Cleanup(func() { ch.Close() })
	return ch
}

func mustConfigureAt(b *testing.B, folder, state string) sdk.Channel {
	b.Helper()
	ch, err := dir.New().Configure(context.Background(), sdk.ConfigureRequest{
		Config:   []byte(`{"path": "` + folder + `", "poll_interval": "10ms"}`),
		StateDir: state,
	})
	if err != nil {
		b.Fatal(err)
	}
	return ch
}
