package host_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/remora-p2p/remora/sdk"
)

// writeCalls is how many write system calls this process has made.
func writeCalls(t *testing.T) int64 {
	t.Helper()
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skipf("no write count: %v", err)
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "syscw: "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Skip("no syscw in /proc/self/io")
	return 0
}

// TestPluginWrites: the host's connection to an adapter process sends a
// Publish batch of 64 envelopes of 1 KiB (five TLS records) in one write
// (go-plugin's AutoMTLS with coalesced writes, a 128 KiB gRPC write
// buffer), and messages many times the buffer still cross intact.
func TestPluginWrites(t *testing.T) {
	c := launch(t, "serve", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ch, err := c.Configure(ctx, sdk.ConfigureRequest{ChannelID: "writes", StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	items := make([]sdk.PublishItem, 64)
	for i := range items {
		items[i].Data = make([]byte, 1024)
		rand.Read(items[i].Data)
	}
	const calls = 50
	before := writeCalls(t)
	for i := range calls {
		for j := range items {
			items[j].IdempotencyKey = fmt.Sprintf("%d-%d", i, j)
		}
		if _, err := ch.Publish(ctx, sdk.PublishRequest{Items: items}); err != nil {
			t.Fatal(err)
		}
	}
	// One write per call, plus the odd flow-control update; five or more
	// when each TLS record leaves on its own.
	if per := float64(writeCalls(t)-before) / calls; per > 2.5 {
		t.Errorf("%.1f writes per Publish of 64 KiB, want 1 (at most 2.5)", per)
	}

	// Three envelopes of 1 MiB (the mem adapter's limit): a message 24
	// times the write buffer, there and back.
	big := make([]sdk.PublishItem, 3)
	for i := range big {
		big[i] = sdk.PublishItem{Data: make([]byte, 1<<20), IdempotencyKey: fmt.Sprintf("big-%d", i)}
		rand.Read(big[i].Data)
	}
	resp, err := ch.Publish(ctx, sdk.PublishRequest{Items: big})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{}
	for i, r := range resp.Results {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		want[r.ID] = big[i].Data
	}
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	_ = ch.Subscribe(sctx, sdk.SubscribeRequest{}, sdk.SinkFunc(func(_ context.Context, d sdk.Delivery) error {
		if w, ok := want[d.ID]; ok {
			if !bytes.Equal(d.Data, w) {
				t.Errorf("envelope %s came back as %d other bytes", d.ID, len(d.Data))
			}
			delete(want, d.ID)
		}
		if len(want) == 0 {
			scancel()
		}
		return nil
	}))
	if len(want) != 0 {
		t.Fatalf("%d of the 1 MiB envelopes did not come back", len(want))
	}
}
