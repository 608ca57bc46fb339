package matrix

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/remora-p2p/remora/core/node/nodetest"
	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/channeltest"
	"github.com/remora-p2p/remora/testenv"
)

// BenchmarkDeliveryLatency measures publish → delivery through the room:
// alice publishes one envelope at a time, bob's running subscription
// (long-poll /sync) receives it. Reports p50/p99 in ms.
func BenchmarkDeliveryLatency(b *testing.B) {
	hs := needHomeserver(b)
	alice, bob := hs.register(b), hs.register(b)
	room := createRoom(b, alice, []user{bob}, nil)
	a := hs.mustOpen(b, alice, room, b.TempDir())
	r := hs.mustOpen(b, bob, room, b.TempDir())
	got := make(chan string, 16)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Subscribe(ctx, sdk.SubscribeRequest{}, sdk.SinkFunc(func(ctx context.Context, d sdk.Delivery) error {
		got <- string(d.Data)
		return nil
	}))
	// Warm up: the subscription is live once a first item arrives.
	channeltest.Publish(b, a, item([]byte("warmup")))
	for d := range got {
		if d == "warmup" {
			break
		}
	}
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		data := []byte("bench-" + strconv.Itoa(i) + "-" + randomName(""))
		start := time.Now()
		channeltest.Publish(b, a, item(data))
		for d := range got {
			if d == string(data) {
				break
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkOfflineBacklog1000 measures how long a reader that was offline
// takes, from Subscribe with its saved cursor, to receive 1,000 envelopes
// published meanwhile. Target ≤ 30 s. "packed": published in batches of 64
// (as core flushes; about 16 events). "one-per-event": 1,000 single
// publishes, 1,000 events: a limited sync timeline, the gap filled from
// /messages.
func BenchmarkOfflineBacklog1000(b *testing.B) {
	for _, mode := range []struct {
		name  string
		batch int
	}{{"packed", 64}, {"one-per-event", 1}} {
		b.Run(mode.name, func(b *testing.B) { benchBacklog(b, mode.batch) })
	}
}

func benchBacklog(b *testing.B, batch int) {
	hs := needHomeserver(b)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		alice, bob := hs.register(b), hs.register(b)
		room := createRoom(b, alice, []user{bob}, nil)
		a := hs.mustOpen(b, alice, room, b.TempDir())
		r := hs.mustOpen(b, bob, room, b.TempDir())
		first := item([]byte("before"))
		channeltest.Publish(b, a, first)
		col, stop := subscribe(b, r, nil)
		col.waitFor(b, wantSet(first.Data), time.Minute)
		stop()
		cursor := col.cursor
		var items []sdk.PublishItem
		want := map[string]bool{}
		for range 1000 {
			it := item(payloadN(300))
			items = append(items, it)
			want[string(it.Data)] = true
		}
		for j := 0; j < len(items); j += batch {
			channeltest.Publish(b, a, items[j:min(j+batch, len(items))]...)
		}
		b.StartTimer()
		start := time.Now()
		col, stop = subscribe(b, r, cursor)
		col.waitFor(b, want, 2*time.Minute)
		elapsed := time.Since(start)
		b.StopTimer()
		stop()
		b.ReportMetric(elapsed.Seconds(), "s/1000-backlog")
	}
}

// BenchmarkColdStartDirectStream: two nodes whose only common ground is a
// Matrix room (each with its own account); the timer runs until one has a
// direct connection to the other. Target ≤ 2 s.
//
//   - fresh-join: two fresh nodes (new identities, empty stores) start; alice
//     creates a circle and invites bob; the join request, the welcome and
//     both presence records travel through the room (presence as
//     board state events).
//   - restart: the two members stop and start again (new listen ports, so
//     their cached addresses are stale) and find each other again through
//     the room.
func BenchmarkColdStartDirectStream(b *testing.B) {
	b.Run("fresh-join", func(b *testing.B) {
		var total time.Duration
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			hs := needHomeserver(b)
			ua, ub := hs.register(b), hs.register(b)
			room := createRoom(b, ua, []user{ub}, &event.PowerLevelsEventContent{
				Users: map[id.UserID]int{ua.id: 100}, Events: map[string]int{boardEvents: 0},
			})
			b.StartTimer()
			start := time.Now()
			a, c, _ := circleIn(b, hs, ua, ub, room)
			testenv.WaitFor(b, "direct connection", time.Minute, func() bool { return nodetest.Connected(a, c) })
			total += time.Since(start)
			b.StopTimer()
			a.Stop()
			c.Stop()
		}
		b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-to-direct")
	})
	b.Run("restart", func(b *testing.B) {
		a, c, _ := circleOverMatrix(b)
		testenv.WaitFor(b, "first connection", time.Minute, func() bool { return nodetest.Connected(a, c) })
		var total time.Duration
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			a.Stop()
			c.Stop()
			b.StartTimer()
			start := time.Now()
			a.Start()
			c.Start()
			testenv.WaitFor(b, "direct connection after restart", time.Minute, func() bool { return nodetest.Connected(a, c) })
			total += time.Since(start)
		}
		b.StopTimer()
		a.Stop()
		c.Stop()
		b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-to-direct")
	})
}
