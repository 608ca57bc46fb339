package matrix

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/remora-p2p/remora/core/node"
	"github.com/remora-p2p/remora/core/node/nodetest"
	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/testenv"
	"github.com/remora-p2p/remora/testenv/benchdoc"
)

var (
	scaleSizes = flag.String("scale", "10,50,150", "circle sizes BenchmarkPresenceScale runs")
	scaleRound = flag.Duration("scale-round", time.Minute, "presence interval (one round) in BenchmarkPresenceScale")
	scaleForm  = flag.String("scale-form", "joins", "how BenchmarkPresenceScale forms its circle: joins (invites over the room, one at a time) or rest (the join protocol run in memory before the nodes start, nodetest.FormCircleAtRest)")
)

// BenchmarkPresenceScale: circles of -scale members (default 10, 50, 150),
// real core nodes in this process, each with its own account in one
// Dendrite room, every request counted by a proxy in front of the server.
// Once the circle is formed every node is restarted at the same moment,
// twice: on new ports, then on the ports kept from that run (the
// daemon's default); reported are the time until every member holds every
// other member's presence record issued after that moment, the requests
// per member in the second such round and in the steady round that follows (presence interval
// -scale-round; boards read every 30 s, the default), and the bytes of
// board state one member writes per day at the default presence interval
// (5 min). The circle is formed by joins over the room, or, with
// -scale-form rest, before the nodes start (nodetest.FormCircleAtRest:
// forming 150 members one join at a time would take hours in one process)
// and then measured from the first start with no peer caches as well.
//
//	REMORA_TESTENV=/tmp/remora-testenv go test ./matrix -run '^$' -bench PresenceScale -benchtime 1x -timeout 60m
func BenchmarkPresenceScale(b *testing.B) {
	nodetest.ServeProfiles(b)
	hs := needHomeserver(b)
	var results []scaleResult
	for _, f := range strings.Split(*scaleSizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 {
			b.Fatalf("-scale: %q is not a circle size", f)
		}
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) { results = append(results, presenceScale(b, hs, n)) })
	}
	writeScale(b, results)
}

// scaleResult is one circle size's figures.
type scaleResult struct {
	members                    int
	converged                  time.Duration // 0: not within the deadline
	convergedNewPorts          time.Duration // the same, every node on a new port
	up, upNewPorts             time.Duration // of that: until the last node was started
	fraction                   float64       // of member pairs holding a fresh record at the end
	perMember, readKiB, dayKiB float64       // a steady round
	restartPerMember           float64       // requests per member in the round of the restart
	formed                     time.Duration
	detail                     string
}

// writeScale puts the run's table into BENCHMARKS.md and its plots into
// plots/ (testenv/benchdoc).
func writeScale(b *testing.B, rs []scaleResult) {
	if len(rs) == 0 {
		return
	}
	var md strings.Builder
	fmt.Fprintf(&md, "Run %s, presence round %v, boards read every 30 s; command:\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), *scaleRound)
	fmt.Fprintf(&md, "    REMORA_TESTENV=/tmp/remora-testenv REMORA_BENCH_WRITE=1 go test ./matrix -run '^$' -bench PresenceScale -benchtime 1x -timeout 90m -scale %s -scale-round %v -scale-form %s\n\n", *scaleSizes, *scaleRound, *scaleForm)
	md.WriteString("| members | circle formed in | all presence held after a restart of all: ports kept / new ports | requests per member: restart until all held / a steady round | KiB read per member per steady round | KiB board written per member-day (5 min interval) |\n|---|---|---|---|---|---|\n")
	var conv, reqs benchdoc.Series
	conv.Name, reqs.Name = "Matrix (Dendrite)", "Matrix (Dendrite)"
	for _, r := range rs {
		c := fmt.Sprintf("%.1f s", r.converged.Seconds())
		if r.converged == 0 {
			c = fmt.Sprintf("not within the deadline (%.0f %% of pairs)", 100*r.fraction)
		} else {
			conv.X, conv.Y = append(conv.X, float64(r.members)), append(conv.Y, r.converged.Seconds())
		}
		if r.converged != 0 {
			c += fmt.Sprintf(" (%.1f s after the last start)", (r.converged - r.up).Seconds())
		}
		cn := fmt.Sprintf("%.1f s (%.1f s)", r.convergedNewPorts.Seconds(), (r.convergedNewPorts - r.upNewPorts).Seconds())
		if r.convergedNewPorts == 0 {
			cn = "not within the deadline"
		}
		fmt.Fprintf(&md, "| %d | %v | %s / %s | %.1f / %.1f | %.0f | %.0f |\n", r.members, r.formed.Round(time.Second), c, cn, r.restartPerMember, r.perMember, r.readKiB, r.dayKiB)
		reqs.X, reqs.Y = append(reqs.X, float64(r.members)), append(reqs.Y, r.perMember)
	}
	md.WriteString("\n")
	for _, r := range rs {
		fmt.Fprintf(&md, "- %d members: %s\n", r.members, r.detail)
	}
	md.WriteString("\n![convergence](plots/scale-convergence.svg) ![requests](plots/scale-requests.svg)\n")
	benchdoc.Section(b, "scale-matrix", md.String())
	benchdoc.Lines(b, "scale-convergence.svg", "Every member holds every other's presence", "members", "seconds after a restart of all", conv)
	benchdoc.Lines(b, "scale-requests.svg", "Requests per member per presence round", "members", "requests", reqs)
}

func presenceScale(b *testing.B, hs homeserver, n int) scaleResult {
	users := make([]user, n)
	nodetest.Parallel(n, 4, func(i int) { users[i] = hs.register(b) })
	room := createRoom(b, users[0], users[1:], &event.PowerLevelsEventContent{
		Users:  map[id.UserID]int{users[0].id: 100},
		Events: map[string]int{boardEvents: 0},
	})
	root := b.TempDir()
	keepPorts := true
	nodes := make([]*nodetest.Node, n)
	counters := make([]*requestCounter, n)
	for i := range n {
		counters[i] = newRequestCounter(b, hs.url)
		u, proxy := users[i], counters[i].url
		nodes[i] = nodetest.New(b, fmt.Sprintf("m%03d", i), filepath.Join(root, strconv.Itoa(i)), nodetest.Channel{
			Name: "matrix", ID: string(room), Adapter: "matrix",
			Open: func(ctx context.Context, stateDir string) (sdk.Channel, error) {
				ch, err := hs.open(ctx, b, u, room, stateDir, map[string]any{"homeserver": proxy})
				if err != nil {
					return nil, err
				}
				return ch, nil
			}})
		nodes[i].Tune = func(o *node.Options) {
			o.PresenceInterval = *scaleRound
			o.BoardPollInterval = 30 * time.Second
			o.LiveTimeout = 5 * time.Second
			o.KeepPorts = keepPorts
		}
	}
	formStart := time.Now()
	nodetest.FormAndStart(b, nodes, *scaleForm, formJoined(b, nodes, counters), func(fresh, pairs int, spread string) {
		nodetest.Progress(b, "%d members, first start: %d of %d pairs hold a fresh record; %s; %s", n, fresh, pairs, nodeCounts(nodes), spread)
	})
	defer nodetest.Parallel(n, 8, func(i int) { nodes[i].Stop() })
	testenv.WaitFor(b, "every member knowing every other", 20*time.Minute, func() bool { return nodetest.AllKnown(nodes) })
	formed := time.Since(formStart)
	nodetest.Progress(b, "%d members: circle formed (-scale-form %s) in %v", n, *scaleForm, formed.Round(time.Second))

	// Two rounds: everyone restarts at once and publishes fresh presence,
	// first on new ports (what every restart did before nodes kept their
	// ports: the addresses members cached are stale), then on the ports
	// of that run (node.Options.KeepPorts, the daemon's default: cached
	// addresses reach them at once).
	keepPorts = false
	convergedNew, upNew, _, _, _, _ := restartAll(b, nodes, counters, "new ports")
	keepPorts = true
	converged, up, fresh, pairs, restart, restartWindow := restartAll(b, nodes, counters, "ports kept")
	// A steady round: nothing restarts, every member publishes once. Every
	// member publishes at each multiple of the round on the clock from its
	// first one on (node.nextRound), and its first comes at the latest at
	// the first multiple half a round after its restart: the window runs
	// from just before such a multiple to just before the next.
	at := time.Now().Add(*scaleRound / 2).Truncate(*scaleRound).Add(*scaleRound)
	time.Sleep(time.Until(at.Add(-time.Second)))
	for _, c := range counters {
		c.reset()
	}
	time.Sleep(*scaleRound)
	steady := sum(counters)
	perMember := float64(steady.requests()) / float64(n)
	// Board state one member writes per day at the default interval (5 min).
	putBytes := 0.0
	if steady.count["board-put"] > 0 {
		putBytes = float64(steady.up["board-put"]) / float64(steady.count["board-put"])
	}
	perDay := putBytes * (24 * time.Hour).Seconds() / (5 * time.Minute).Seconds()
	readKiB := float64(steady.down["board-get"]+steady.down["sync"]) / float64(n) / 1024
	b.ReportMetric(converged.Seconds(), "s-converge")
	b.ReportMetric(convergedNew.Seconds(), "s-converge-new-ports")
	b.ReportMetric((converged - up).Seconds(), "s-converge-after-up")
	b.ReportMetric((convergedNew - upNew).Seconds(), "s-converge-after-up-new-ports")
	b.ReportMetric(float64(fresh)/float64(pairs), "fraction-converged")
	b.ReportMetric(perMember, "requests/member/round")
	b.ReportMetric(float64(restart.requests())/float64(n), "requests/member/restart-round")
	b.ReportMetric(perDay/1024, "KiB-board/member-day")
	b.ReportMetric(readKiB, "KiB-read/member/round")
	b.Logf("%d members, restart round (%v): %s", n, restartWindow.Round(time.Second), restart.String(n))
	b.Logf("%d members, steady round (%v): %s", n, *scaleRound, steady.String(n))
	return scaleResult{members: n, converged: converged, convergedNewPorts: convergedNew, up: up, upNewPorts: upNew, fraction: float64(fresh) / float64(pairs), perMember: perMember,
		restartPerMember: float64(restart.requests()) / float64(n), readKiB: readKiB,
		dayKiB: perDay / 1024, formed: formed, detail: "steady round " + steady.String(n)}
}

// restartAll stops every node, starts them all at once and waits until
// every member holds every other member's record issued after that
// moment: it returns the time that took (0: not within the deadline), the
// member pairs holding a fresh record, and the requests made meanwhile.
func restartAll(b *testing.B, nodes []*nodetest.Node, counters []*requestCounter, label string) (converged, up time.Duration, fresh, pairs int, restart requestCounts, window time.Duration) {
	n := len(nodes)
	nodetest.Parallel(n, 8, func(i int) { nodes[i].Stop() })
	for _, c := range counters {
		c.reset()
	}
	t0 := time.Now()
	nodetest.Parallel(n, 8, func(i int) { nodes[i].Start() })
	up = time.Since(t0) // one process starting n nodes: each member is its own machine in life
	nodetest.Progress(b, "%d members, %s: all restarted in %v", n, label, up.Round(10*time.Millisecond))
	// the window opens once all are up: starting 100 nodes in one
	// process takes minutes, which are not the circle's
	deadline := time.Now().Add(max(*scaleRound, 5*time.Minute))
	converged, fresh, pairs = nodetest.AwaitPresence(nodes, t0, deadline, func(fresh, pairs int, spread string) {
		nodetest.Progress(b, "%d members, %s, %v after the restart: %d of %d pairs hold a fresh record; %s; %s", n, label, time.Since(t0).Round(100*time.Millisecond), fresh, pairs, nodeCounts(nodes), spread)
	})
	if converged == 0 {
		nodetest.Progress(b, "%d members, %s: not converged after %v: %d of %d member pairs hold a fresh record", n, label, time.Since(t0).Round(time.Second), fresh, pairs)
	} else {
		nodetest.Progress(b, "%d members, %s: every member holds every other's fresh record %v after the restart, %v after the last node was up; %s", n, label, converged.Round(10*time.Millisecond), (converged - up).Round(10*time.Millisecond), nodeCounts(nodes))
	}
	return converged, up, fresh, pairs, sum(counters), time.Since(t0)
}

// sum adds the counters up.
func sum(counters []*requestCounter) requestCounts {
	var total requestCounts
	for _, c := range counters {
		total.add(c.snapshot())
	}
	return total
}

// formJoined logs each join of a circle formed by joins: its time and the
// room events every member sent for it (the cost of a join as the circle
// grows). A join may wait minutes for its answer on a loaded machine with
// many members syncing.
func formJoined(b *testing.B, nodes []*nodetest.Node, counters []*requestCounter) func(k int, took time.Duration) {
	sends := func() int64 { t := sum(counters); return t.count["log-send"] }
	before := sends()
	return func(k int, took time.Duration) {
		now := sends()
		nodetest.Progress(b, "join %d: answered in %v; room events sent since the previous join: %d; %s", k, took.Round(10*time.Millisecond), now-before, nodeCounts(nodes))
		before = now
	}
}

// nodeCounts sums what the nodes posted to channels by envelope kind, the
// fresh presence records they took by where each came from (a channel or
// peer exchange), what they hold and still owe (outbox), and what waits in
// their channel queues (the inviter's apart: a welcome waits there).
func nodeCounts(nodes []*nodetest.Node) string {
	posts, fresh, handOuts := map[string]int64{}, map[string]int64{}, map[string]int64{}
	outbox, held := 0, 0
	var pexRefused int64            // exchanges refused for coming too soon (NACKed, sent again)
	var queued, inviterQueued int64 // waiting in the nodes' channel queues
	for i, nd := range nodes {
		if chs, err := nd.N.Channels(context.Background()); err == nil {
			for _, ch := range chs {
				queued += ch.Counters["queued"]
				if i == 0 {
					inviterQueued += ch.Counters["queued"]
				}
			}
		}
		for k, v := range nd.N.Counters() {
			if kind, ok := strings.CutPrefix(k, "channel_posts_kind_"); ok {
				posts[kind] += v
			}
			if source, ok := strings.CutPrefix(k, "presence_fresh_"); ok {
				fresh[source] += v
			}
			if k == "dropped_pex_rate" {
				pexRefused += v
			}
			if what, ok := strings.CutPrefix(k, "key_handouts_"); ok {
				handOuts[what] += v // broadcast or direct at each epoch change, broadcasts taken, dropped
			}
		}
		if st, err := nd.N.Status(context.Background()); err == nil {
			outbox += st.Outbox
			if st.Held != nil {
				held += st.Held.Items
			}
		}
	}
	return fmt.Sprintf("posted by kind %v (total), key hand-outs %v (total), fresh presence by source %v (total), peer exchanges refused as too soon %d, outbox %d, held %d, channel queues %d (the inviter's %d)",
		posts, handOuts, fresh, pexRefused, outbox, held, queued, inviterQueued)
}

// requestCounter is a reverse proxy in front of the homeserver that counts
// one member's requests and bytes by kind.
type requestCounter struct {
	url string
	mu  sync.Mutex
	c   requestCounts
}

type requestCounts struct {
	count, up, down map[string]int64
}

func (r *requestCounts) add(o requestCounts) {
	if r.count == nil {
		r.count, r.up, r.down = map[string]int64{}, map[string]int64{}, map[string]int64{}
	}
	for k, v := range o.count {
		r.count[k] += v
		r.up[k] += o.up[k]
		r.down[k] += o.down[k]
	}
}

func (r *requestCounts) requests() int64 {
	var t int64
	for _, v := range r.count {
		t += v
	}
	return t
}

// String is the per-member requests and bytes by kind.
func (r *requestCounts) String(n int) string {
	var kinds []string
	for k := range r.count {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var parts []string
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%s %.1f req (%.1f KiB up, %.1f KiB down)", k,
			float64(r.count[k])/float64(n), float64(r.up[k])/float64(n)/1024, float64(r.down[k])/float64(n)/1024))
	}
	return "per member: " + strings.Join(parts, "; ")
}

func newRequestCounter(t testing.TB, upstream string) *requestCounter {
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	rc := &requestCounter{}
	rc.reset()
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind := requestKind(r)
		cw := &countingWriter{ResponseWriter: w}
		var up int64
		if r.Body != nil {
			r.Body = &countingBody{ReadCloser: r.Body, n: &up}
		}
		proxy.ServeHTTP(cw, r)
		rc.mu.Lock()
		rc.c.count[kind]++
		rc.c.up[kind] += up
		rc.c.down[kind] += cw.n
		rc.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	rc.url = srv.URL
	return rc
}

func (rc *requestCounter) reset() {
	rc.mu.Lock()
	rc.c = requestCounts{count: map[string]int64{}, up: map[string]int64{}, down: map[string]int64{}}
	rc.mu.Unlock()
}

func (rc *requestCounter) snapshot() requestCounts {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out requestCounts
	out.add(rc.c)
	return out
}

func requestKind(r *http.Request) string {
	p := r.URL.Path
	switch {
	case strings.HasSuffix(p, "/sync"):
		return "sync"
	case strings.Contains(p, "/state/") && r.Method == http.MethodPut:
		return "board-put"
	case strings.HasSuffix(p, "/state") && r.Method == http.MethodGet:
		return "board-get"
	case strings.Contains(p, "/send/"):
		return "log-send"
	case strings.HasSuffix(p, "/messages"):
		return "log-read"
	}
	return "other"
}

type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

type countingBody struct {
	io.ReadCloser
	n *int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	*b.n += int64(n)
	return n, err
}
