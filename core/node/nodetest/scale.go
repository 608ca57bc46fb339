package nodetest

import (
	"context"
	"fmt"
	"net/http"
	"net/http/pprof"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/api"
)

// This file holds what the presence scale benchmarks of the adapters share
// (matrix BenchmarkPresenceScale, imap BenchmarkPresenceScaleList): many
// nodes in one process on one channel, a circle formed by sequential
// invites, and the time until every member holds every other member's
// fresh presence.

// Parallel runs f(0..n-1) on at most workers goroutines.
func Parallel(n, workers int, f func(i int)) {
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range min(n, workers) {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				f(i)
			}
		})
	}
	wg.Wait()
}

// FormCircle makes a circle of nodes: the first creates it and invites each
// other in turn (in person), each join waiting at most joinTimeout for its
// answer. joined, if set, is called after each join with the joiner's
// number in the circle (2, 3, …) and the time the join took.
func FormCircle(t testing.TB, nodes []*Node, joinTimeout time.Duration, joined func(k int, took time.Duration)) string {
	t.Helper()
	ctx := context.Background()
	ci, err := nodes[0].N.CreateCircle(ctx, api.CreateCircleRequest{Name: "friends"})
	if err != nil {
		t.Fatal(err)
	}
	for k, j := range nodes[1:] {
		start := time.Now()
		inv, err := nodes[0].N.Invite(ctx, api.InviteRequest{Circle: ci.ID, InPerson: true})
		if err != nil {
			t.Fatal(err)
		}
		jctx, cancel := context.WithTimeout(ctx, joinTimeout)
		_, _, err = j.N.JoinCircle(jctx, inv.Invite)
		cancel()
		if err != nil {
			t.Fatalf("%s joining: %v", j.Name, err)
		}
		if joined != nil {
			joined(k+2, time.Since(start))
		}
	}
	return ci.ID
}

// AllKnown reports whether every node knows every other as a peer.
func AllKnown(nodes []*Node) bool {
	for _, nd := range nodes {
		if p, err := nd.N.Peers(context.Background()); err != nil || len(p) != len(nodes)-1 {
			return false
		}
	}
	return true
}

// FreshPresence counts the (holder, member) pairs in which the holder has
// a presence record of the member issued at since or later, of all n(n−1).
func FreshPresence(nodes []*Node, since time.Time) (fresh, pairs int) {
	pairs = len(nodes) * (len(nodes) - 1)
	for _, nd := range nodes {
		ps, err := nd.N.Peers(context.Background())
		if err != nil {
			continue
		}
		for _, p := range ps {
			if !p.Presence.Before(since) {
				fresh++
			}
		}
	}
	return fresh, pairs
}

// Spread describes how fresh presence (issued at since or later) is spread
// over the nodes, to tell a stall's cause: whether some members' records
// reach nobody (a publishing fault) or some holders hear nobody (a
// receiving fault), and how many live connections the nodes hold.
func Spread(nodes []*Node, since time.Time) string {
	holders := map[string]int{} // subject peer ID → holders of a fresh record of it
	var held, live []int
	byFound := map[string]int{}
	for _, nd := range nodes {
		holders[nd.N.ID().String()] += 0
		ps, err := nd.N.Peers(context.Background())
		if err != nil {
			continue
		}
		h, l := 0, 0
		for _, p := range ps {
			if !p.Presence.Before(since) {
				h++
				holders[p.PeerID]++
				byFound[p.FoundBy]++
			}
			switch p.Path {
			case "lan", "direct", "punched", "relayed":
				l++
			}
		}
		held, live = append(held, h), append(live, l)
	}
	var per []int
	for _, c := range holders {
		per = append(per, c)
	}
	return fmt.Sprintf("fresh records held per node %s; holders per member %s; live connections per node %s; fresh records by the box that first found the peer %v",
		spread(held), spread(per), spread(live), byFound)
}

// spread is "min/median/max (zeros: k)" of v.
func spread(v []int) string {
	if len(v) == 0 {
		return "-"
	}
	v = slices.Clone(v)
	slices.Sort(v)
	zeros := 0
	for _, x := range v {
		if x == 0 {
			zeros++
		}
	}
	return fmt.Sprintf("%d/%d/%d (zeros: %d)", v[0], v[len(v)/2], v[len(v)-1], zeros)
}

// AwaitPresence polls until every node holds every other's presence issued
// at since or later, or until deadline. It returns the time from since
// until then (0 if the deadline came first) and the last count. report,
// if set, is called with the count about every 2 s while it waits, on its
// own goroutine and never twice at once: a report that asks every node
// for its channels' health (a request to the server each) takes seconds
// at 150 members, and must not delay the polls that time the convergence.
// spread is Spread's account of the same moment.
func AwaitPresence(nodes []*Node, since, deadline time.Time, report func(fresh, pairs int, spread string)) (converged time.Duration, fresh, pairs int) {
	lastReport := time.Now()
	var reporting sync.WaitGroup
	defer reporting.Wait()
	var busy atomic.Bool
	for {
		fresh, pairs = FreshPresence(nodes, since)
		if fresh == pairs {
			return time.Since(since), fresh, pairs
		}
		if !time.Now().Before(deadline) {
			return 0, fresh, pairs
		}
		if report != nil && time.Since(lastReport) >= 2*time.Second && !busy.Swap(true) {
			lastReport = time.Now()
			reporting.Go(func() {
				defer busy.Store(false)
				report(fresh, pairs, Spread(nodes, since))
			})
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Progress logs a line and prints it at once on stderr, with the time: a
// benchmark's log comes only at its end, and forming a large circle takes
// minutes.
func Progress(tb testing.TB, format string, args ...any) {
	tb.Helper()
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().UTC().Format(time.TimeOnly)}, args...)...)
	tb.Logf(format, args...)
}

// ServeProfiles serves net/http/pprof on the address in
// REMORA_BENCH_PPROF, if set, until the benchmark ends: where a scale
// benchmark spends its time is read from the running process
// (go tool pprof http://ADDR/debug/pprof/profile?seconds=30).
func ServeProfiles(tb testing.TB) {
	addr := os.Getenv("REMORA_BENCH_PPROF")
	if addr == "" {
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	srv := &http.Server{Addr: addr, Handler: mux}
	go srv.ListenAndServe()
	tb.Cleanup(func() { srv.Close() })
}
