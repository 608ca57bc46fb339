package imap

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/channeltest"
)

// BenchmarkListLatency measures publish → delivery through the real list
// (mlmmj, and Mailman 3): SMTP submission → postfix → list manager →
// postfix → LMTP → dovecot → IMAP IDLE → FETCH, one item per iteration,
// with bob's subscription idling. Publish includes waiting for alice's own
// copy back from the list (the list's verdict).
func BenchmarkListLatency(b *testing.B) {
	env := needMail(b)
	for _, lm := range listManagers(b) {
		b.Run(lm.name, func(b *testing.B) {
			env.empty(b, "bob", "INBOX")
			list := map[string]any{"list_address": lm.circle}
			benchLatency(b, open(b, env.config(ModeList, "alice", list), "alice"), open(b, env.config(ModeList, "bob", list), "bob"), nil)
		})
	}
}

// BenchmarkDirectLatency is the same without the list manager: SMTP
// submission → postfix → LMTP → dovecot → IMAP IDLE.
func BenchmarkDirectLatency(b *testing.B) {
	env := needMail(b)
	folder := randName("bl")
	cfg := map[string]any{"folder": folder}
	benchLatency(b, open(b, env.config(ModeDirect, "alice", cfg), "alice"), open(b, env.config(ModeDirect, "bob", cfg), "bob"), []string{"bob+" + folder + "@" + env.domain})
}

// BenchmarkSharedLatency: IMAP APPEND by one session → IDLE of another.
func BenchmarkSharedLatency(b *testing.B) {
	env := needMail(b)
	cfg := map[string]any{"folder": randName("bs")}
	benchLatency(b, open(b, env.config(ModeShared, "carol", cfg), "carol"), open(b, env.config(ModeShared, "carol", cfg), "carol"), nil)
}

func benchLatency(b *testing.B, alice, bob sdk.Channel, to []string) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan string, 1024)
	go bob.Subscribe(ctx, sdk.SubscribeRequest{}, sdk.SinkFunc(func(_ context.Context, d sdk.Delivery) error {
		if len(d.Data) > 0 {
			got <- string(d.Data)
		}
		return nil
	}))
	// Let the subscription reach IDLE and drain what is there.
	channeltest.Publish(b, alice, item("warm-up", to...))
	waitData(b, got, "warm-up")
	var lat []time.Duration
	var pub time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		data := fmt.Sprintf("latency-%d-%s", i, randName(""))
		t0 := time.Now()
		channeltest.Publish(b, alice, item(data, to...))
		pub += time.Since(t0)
		waitData(b, got, data)
		lat = append(lat, time.Since(t0))
	}
	reportPercentiles(b, lat)
	b.ReportMetric(float64(pub.Microseconds())/1000/float64(len(lat)), "publish-ms")
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

func waitData(b testing.TB, got chan string, want string) {
	b.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case d := <-got:
			if d == want {
				return
			}
		case <-timeout:
			b.Fatalf("%s not delivered in 30s", want)
		}
	}
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}

// BenchmarkOfflineBacklog: 1,000 items published through the list while
// the reader is offline (in Publish batches of the given size, as core's
// outbox hands them over); once every mail is in the reader's INBOX the
// reader starts and the time until it has all 1,000 is measured. Reports
// mails per 1,000 items and seconds to deliver.
func BenchmarkOfflineBacklog(b *testing.B) {
	for _, batch := range []int{64, 1000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			env := needMail(b)
			list := map[string]any{"list_address": "circle@example.test"}
			alice := open(b, env.config(ModeList, "alice", list), "alice")
			var total time.Duration
			var mails uint32
			for b.Loop() {
				b.StopTimer()
				env.empty(b, "carol", "INBOX")
				want := map[string]bool{}
				var items []sdk.PublishItem
				for i := range 1000 {
					d := fmt.Sprintf("backlog-%04d-%s", i, randName(""))
					want[d] = true
					items = append(items, item(d))
				}
				mails = 0
				for chunk := range slices.Chunk(items, batch) {
					// as many mails as the adapter's planner makes of it
					mails += uint32(len(alice.(*channel).plan(chunk, seq(len(chunk)))))
					channeltest.Publish(b, alice, chunk...)
				}
				env.waitCount(b, "carol", "INBOX", mails)
				carol := open(b, env.config(ModeList, "carol", list), "carol")
				b.StartTimer()
				t0 := time.Now()
				got, err := collect(b, carol, nil, 1000, 2*time.Minute)
				total += time.Since(t0)
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				for _, d := range got {
					if want[string(d.Data)] {
						n++
					}
				}
				if n != 1000 {
					b.Fatalf("delivered %d of 1000", n)
				}
				if c := env.count(b, "carol", "INBOX"); c != mails {
					b.Fatalf("%d mails in the INBOX, want %d", c, mails)
				}
				carol.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(mails), "mails/1000items")
			b.ReportMetric(total.Seconds()/float64(b.N), "s/1000items")
		})
	}
}
