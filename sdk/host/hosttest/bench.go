package hosttest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/remora-p2p/remora/sdk"
)

// PublishBatches is the adapter-hop benchmarks' loop (plugins, sdk/host):
// per op, one Publish of batch envelopes of size random bytes with fresh
// idempotency keys. It returns each call's latency; b's timer is stopped.
func PublishBatches(b *testing.B, ch sdk.Channel, batch, size int) []time.Duration {
	items := make([]sdk.PublishItem, batch)
	for i := range items {
		items[i].Data = make([]byte, size)
		rand.Read(items[i].Data)
	}
	key := make([]byte, 12)
	lat := make([]time.Duration, 0, 1024)
	ctx := context.Background()
	b.SetBytes(int64(batch * size))
	b.ResetTimer()
	for b.Loop() {
		for i := range items {
			rand.Read(key)
			items[i].IdempotencyKey = hex.EncodeToString(key)
		}
		t0 := time.Now()
		resp, err := ch.Publish(ctx, sdk.PublishRequest{Items: items})
		lat = append(lat, time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range resp.Results {
			if r.Err != nil {
				b.Fatal(r.Err)
			}
		}
	}
	b.StopTimer()
	return lat
}
