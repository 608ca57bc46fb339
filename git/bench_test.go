package git_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/remora-p2p/remora/git"
	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/channeltest"
)

// benchOpen configures member m of r for a benchmark.
func benchOpen(b *testing.B, r remote, m int, over map[string]any) sdk.Channel {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ch, err := git.New().Configure(ctx, sdk.ConfigureRequest{
		ChannelID: fmt.Sprintf("m%d", m), Config: r.config(b, m, over),
		StateDir: b.TempDir(), Logger: testLogger(b),
	})
	if err != nil {
		b.Fatalf("configure: %v", err)
	}
	return ch
}

// dirSize is the bytes under dir.
func dirSize(b *testing.B, dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

func randomItems(prefix string, n, size int) []sdk.PublishItem {
	out := make([]sdk.PublishItem, n)
	for i := range out {
		data := make([]byte, size)
		rand.Read(data)
		out[i] = sdk.PublishItem{Data: data, IdempotencyKey: fmt.Sprintf("%s-%05d", prefix, i)}
	}
	return out
}

// BenchmarkStoreAndForward: 1,000 envelopes of 1 KiB (random: ciphertext
// does not compress) published while the reader is offline, with the
// default flush interval (1 s), in Publish batches of 64 from 4 concurrent
// callers as the node's outbox sends them; then the reader starts from a
// fresh state dir and reads everything. Reports the catch-up time, commits
// per second while publishing, and the remote's growth per 1,000 messages
// (as pushed, and after git gc).
func BenchmarkStoreAndForward(b *testing.B) {
	const n, size, batch, callers = 1000, 1024, 64, 4
	var sumCatchUp, sumPublish, worstCatchUp time.Duration
	var sumCommits, sumGrown, sumPacked int64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		r := daemonRemote(b)
		before := dirSize(b, r.bare)
		pub := benchOpen(b, r, 0, map[string]any{"flush_interval": nil, "poll_min": nil, "poll_max": nil})
		its := randomItems("sf", n, size)
		b.StartTimer()

		t0 := time.Now()
		var wg sync.WaitGroup
		next := make(chan []sdk.PublishItem)
		for range callers {
			wg.Go(func() {
				for chunk := range next {
					res, err := pub.Publish(context.Background(), sdk.PublishRequest{Items: chunk})
					if err != nil {
						b.Error(err)
						continue
					}
					for _, r := range res.Results {
						if r.Err != nil {
							b.Error(r.Err)
						}
					}
				}
			})
		}
		for j := 0; j < n; j += batch {
			next <- its[j:min(j+batch, n)]
		}
		close(next)
		wg.Wait()
		publishTime := time.Since(t0)
		commits := pub.(sdk.Healther).Health(context.Background()).Counters["commits"]
		pub.Close()

		t1 := time.Now()
		sub := benchOpen(b, r, 1, map[string]any{"flush_interval": nil, "poll_min": nil, "poll_max": nil})
		col := newCollector()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- sub.Subscribe(ctx, sdk.SubscribeRequest{}, col) }()
		for col.distinct() < n {
			select {
			case <-col.ch:
			case err := <-done:
				b.Fatalf("subscribe: %v", err)
			case <-time.After(2 * time.Minute):
				b.Fatalf("reader has %d of %d after 2 min", col.distinct(), n)
			}
		}
		catchUp := time.Since(t1)
		cancel()
		<-done
		sub.Close()

		b.StopTimer()
		grown := dirSize(b, r.bare) - before
		gitCLI(b, "", "--git-dir="+r.bare, "gc", "-q")
		packed := dirSize(b, r.bare) - before
		sumCatchUp += catchUp
		worstCatchUp = max(worstCatchUp, catchUp)
		sumPublish += publishTime
		sumCommits += commits
		sumGrown += grown
		sumPacked += packed
		b.StartTimer()
	}
	nf := float64(b.N)
	b.ReportMetric(sumCatchUp.Seconds()/nf, "catchup-s")
	b.ReportMetric(worstCatchUp.Seconds(), "worst-catchup-s")
	b.ReportMetric(sumPublish.Seconds()/nf, "publish-s")
	b.ReportMetric(float64(sumCommits)/sumPublish.Seconds(), "commits/s")
	b.ReportMetric(float64(sumCommits)/nf, "commits")
	b.ReportMetric(float64(sumGrown)/1024/nf, "KiB-pushed/1k-msgs")
	b.ReportMetric(float64(sumPacked)/1024/nf, "KiB-after-gc/1k-msgs")
}

// BenchmarkRendezvous: publish → delivery latency with a fixed poll
// interval (poll_min = poll_max = 2 s, flush 1 s default), one item at a
// time at random phase to the reader's poll; target ≤ poll interval + 2 s.
func BenchmarkRendezvous(b *testing.B) {
	poll := 2 * time.Second
	if v := os.Getenv("REMORA_GIT_BENCH_POLL"); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			poll = d
		}
	}
	r := daemonRemote(b)
	over := map[string]any{"flush_interval": nil, "poll_min": poll.String(), "poll_max": poll.String()}
	pub := benchOpen(b, r, 0, over)
	defer pub.Close()
	sub := benchOpen(b, r, 1, over)
	defer sub.Close()
	col := newCollector()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sub.Subscribe(ctx, sdk.SubscribeRequest{}, col) }()
	defer func() { cancel(); <-done }()
	var total, worst time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		time.Sleep(time.Duration(int64(poll) * int64(i%4) / 4)) // vary the phase
		it := randomItems("rv"+strconv.Itoa(i), 1, 512)
		b.StartTimer()
		t0 := time.Now()
		channeltest.Publish(b, pub, it...)
		for !col.has(string(it[0].Data)) {
			select {
			case <-col.ch:
			case <-time.After(time.Minute):
				b.Fatal("no delivery within a minute")
			}
		}
		d := time.Since(t0)
		total += d
		worst = max(worst, d)
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "latency-s")
	b.ReportMetric(worst.Seconds(), "worst-s")
	b.ReportMetric(poll.Seconds(), "poll-s")
}

// BenchmarkBoardGrowth: a 1 KiB presence-sized value rewritten under one
// board key, one push per Put; reports the remote's growth per Put.
func BenchmarkBoardGrowth(b *testing.B) {
	r := daemonRemote(b)
	ch := benchOpen(b, r, 0, map[string]any{"flush_interval": nil})
	defer ch.Close()
	board := ch.(sdk.Board)
	before := dirSize(b, r.bare)
	val := make([]byte, 1024)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rand.Read(val)
		if err := board.Put(context.Background(), sdk.PutRequest{Key: "presence-key", Value: val}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	grown := dirSize(b, r.bare) - before
	gitCLI(b, "", "--git-dir="+r.bare, "gc", "-q")
	packed := dirSize(b, r.bare) - before
	b.ReportMetric(float64(grown)/float64(b.N), "B-pushed/put")
	b.ReportMetric(float64(packed)/float64(b.N), "B-after-gc/put")
}
