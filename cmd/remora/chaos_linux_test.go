package main

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/matrix/matrixtest"
	"github.com/remora-p2p/remora/testenv"
)

// chaosServers are the private servers of one chaos run: stopped and
// restarted by the run, so never the shared ones.
type chaosServers struct {
	mail, matrix, git *testenv.Private
}

func (s chaosServers) byName() map[string]*testenv.Private {
	return map[string]*testenv.Private{"mail": s.mail, "matrix": s.matrix, "git": s.git}
}

// chaosMembers makes alice, bob and carol with four channels each, one
// per kind of server (a folder, a git repository behind git daemon, a
// mlmmj list on Postfix and Dovecot, a Dendrite room), running, in one
// circle; it returns the homes and the circle's ID. Every bootstrap box
// but the cache is off, so that after a restart members find each other
// again through the channels.
func chaosMembers(t testing.TB, s chaosServers) ([]*home, string) {
	t.Helper()
	folder := t.TempDir()
	repo := newGitRepo(t, s.git.Get("REMORA_GIT_ROOT"), s.git.Get("REMORA_GIT_DAEMON_URL"), "chaos")
	room := newMatrixRoom(t, s.matrix.Get("REMORA_MATRIX_URL"), s.matrix.Get("REMORA_MATRIX_SECRET"), 3, matrixtest.RandomName("chaos "))

	var homes []*home
	for i, name := range []string{"alice", "bob", "carol"} {
		h := newHome(t, name)
		h.level = "info"
		port := testenv.FreePort(t)
		editConfig(t, h, func(c *Config) {
			c.LAN = &LANConfig{MDNS: "off"}
			c.PEX = &PEXConfig{Enabled: off()}
			c.Web, c.DNS = nil, nil
			c.RelayList = &RelayListConfig{Enabled: off()}
			c.Listen = []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port)}
			c.PresenceInterval = "3s"
		})
		addFolderChannel(h, folder)
		addGitChannel(h, repo)
		addMailListChannel(t, h, s.mail, name)
		room.add(t, h, i)
		h.start()
		homes = append(homes, h)
	}
	return homes, formCircle(t, homes)
}

// chaosMsg is one message of a chaos run.
type chaosMsg struct {
	from, index int
	to          []int // recipients (home indexes)
	direct      bool
	accepted    bool // Send returned its ID: must arrive exactly once
}

// chaosResult is what one chaos run counted.
type chaosResult struct {
	seed                uint64
	sent, accepted      int           // Send calls; those that returned an ID
	expected, delivered int           // copies owed to recipients (accepted); inbox entries of them
	inFlight            int           // Send failed as its daemon died: at most once
	inFlightArrived     int           // of those, arrived (once)
	duplicates          int64         // copies dropped by dedupe (at least: a killed daemon's last second is lost)
	drain               time.Duration // from the last recovery to the last delivery
	paths               map[string]int
	actions             map[string]int
	elapsed             time.Duration
}

func (r chaosResult) String() string {
	var paths, actions []string
	for k, v := range r.paths {
		paths = append(paths, fmt.Sprintf("%s %d", k, v))
	}
	for k, v := range r.actions {
		actions = append(actions, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(paths)
	sort.Strings(actions)
	return fmt.Sprintf("seed %d: %d sent, %d accepted (%d copies owed, %d delivered, each once), %d failed as their daemon died (%d of them arrived, once); "+
		"%d duplicate copies suppressed; backlog drained %v after the last recovery; run %v; paths: %s; chaos: %s",
		r.seed, r.sent, r.accepted, r.expected, r.delivered, r.inFlight, r.inFlightArrived, r.duplicates, r.drain.Round(100*time.Millisecond),
		r.elapsed.Round(time.Second), strings.Join(paths, ", "), strings.Join(actions, ", "))
}

// chaosParams reads the run's size: REMORA_CHAOS_MESSAGES (default 300),
// REMORA_CHAOS_SPAN (how long sending and chaos last, default 90s) and
// REMORA_CHAOS_SEED (default: random, printed for replay).
func chaosParams(t testing.TB) (n int, span time.Duration, seed uint64) {
	n, span, seed = 300, 90*time.Second, rand.Uint64()
	if v := os.Getenv("REMORA_CHAOS_MESSAGES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 3 {
			t.Fatalf("REMORA_CHAOS_MESSAGES=%q: want a number ≥ 3", v)
		}
	}
	if v := os.Getenv("REMORA_CHAOS_SPAN"); v != "" {
		var err error
		if span, err = time.ParseDuration(v); err != nil {
			t.Fatalf("REMORA_CHAOS_SPAN=%q: %v", v, err)
		}
	}
	if v := os.Getenv("REMORA_CHAOS_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("REMORA_CHAOS_SEED=%q: %v", v, err)
		}
	}
	return n, span, seed
}

// TestChaos (issue #16): three daemons (alice, bob, carol) send n messages
// to the circle and to each other over four channels (folder, git, mail
// list, Matrix room) and the live path, while, at random points, adapter
// processes and daemons are killed with SIGKILL and each server (Postfix
// with Dovecot, Dendrite, git daemon: private instances) is stopped in the
// middle of the traffic and restarted. After recovery the backlog drains:
// every accepted message is in each recipient's inbox exactly once, a send
// that failed as its daemon died is there at most once, and each sender's
// messages carry sender_seq in the order they were sent. The seed is
// printed; REMORA_CHAOS_SEED replays a run's choices. `make test-long`
// runs 10,000 messages (BENCHMARKS.md).
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("runs daemons and private servers")
	}
	n, span, seed := chaosParams(t)
	t.Logf("chaos: %d messages over %v, seed %d (replay: REMORA_CHAOS_SEED=%d)", n, span, seed, seed)
	r := runChaos(t, n, span, seed)
	t.Log(r)
}

func runChaos(t testing.TB, n int, span time.Duration, seed uint64) chaosResult {
	start := time.Now()
	srv := chaosServers{mail: testenv.StartPrivate(t, "mail"), matrix: testenv.StartPrivate(t, "matrix"), git: testenv.StartPrivate(t, "git")}
	homes, circle := chaosMembers(t, srv)
	ids := make([]string, len(homes))
	for i, h := range homes {
		st, err := h.client().Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = st.PeerID
	}
	r := chaosResult{seed: seed, paths: map[string]int{}, actions: map[string]int{}}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	// The messages are drawn before anything runs, so that a seed
	// replays the same traffic.
	perSender := (n + len(homes) - 1) / len(homes) // the larger share
	msgs := map[string]*chaosMsg{}
	plan := make([][]string, len(homes))
	for s := range homes {
		share := n / len(homes)
		if s < n%len(homes) {
			share++
		}
		for i := range share {
			m := &chaosMsg{from: s, index: i}
			if rng.IntN(4) == 0 {
				to := (s + 1 + rng.IntN(len(homes)-1)) % len(homes)
				m.direct, m.to = true, []int{to}
			} else {
				for o := range homes {
					if o != s {
						m.to = append(m.to, o)
					}
				}
			}
			text := fmt.Sprintf("chaos %s %05d %016x", homes[s].name, i, rng.Uint64())
			msgs[text] = m
			plan[s] = append(plan[s], text)
		}
	}

	// dup counts duplicates per daemon incarnation: the last reading of
	// the node's counter before it was killed.
	var mu sync.Mutex
	dupNow := make([]int64, len(homes))
	dupDone := make([]int64, len(homes))
	down := make([]bool, len(homes))
	readDup := func(i int) {
		st, err := homes[i].client().Status(context.Background())
		if err == nil && st.Held != nil {
			mu.Lock()
			dupNow[i] = st.Held.DuplicatesRemoved
			mu.Unlock()
		}
	}

	// Senders: one per daemon, paced over the span.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg, watch sync.WaitGroup
	defer watch.Wait()
	interval := span / time.Duration(max(perSender, 1))
	for s, h := range homes {
		prng := rand.New(rand.NewPCG(seed+uint64(s)+1, 7))
		wg.Go(func() {
			c := h.client()
			for _, text := range plan[s] {
				m := msgs[text]
				req := api.SendRequest{Circle: circle, Text: text}
				if m.direct {
					req.To = []string{ids[m.to[0]]}
				}
				sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
				_, err := c.Send(sctx, req)
				scancel()
				mu.Lock()
				m.accepted = err == nil
				r.sent++
				mu.Unlock()
				if err != nil {
					// Its daemon is down: wait for the restart.
					for ctx.Err() == nil {
						if st, err := c.Status(ctx); err == nil && st.Ready {
							break
						}
						time.Sleep(100 * time.Millisecond)
					}
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(interval/2 + time.Duration(prng.Int64N(int64(interval)))):
				}
			}
		})
	}

	// Chaos, until the span ends, in goroutines of their own so that
	// failures overlap: adapter processes are killed every 1 to 5 s;
	// a daemon every 4 to 12 s, back after 1 to 8 s (at most one daemon
	// is down at a time, so two members always talk); each server is
	// stopped every 5 to 20 s, back after 1 to 8 s. Each goroutine has its
	// own seeded random source, so a seed replays the same choices (the
	// timing of the machine aside).
	end := time.Now().Add(span)
	var chaosMu sync.Mutex // guards homes[i].run and down
	var actionsMu sync.Mutex
	action := func(name string) {
		t.Logf("%s chaos: %s", time.Now().Format("15:04:05.000"), name)
		actionsMu.Lock()
		r.actions[strings.Join(strings.Fields(name)[:2], " ")]++ // by kind: "daemon SIGKILL"
		actionsMu.Unlock()
	}
	between := func(rng *rand.Rand, lo, hi time.Duration) time.Duration {
		return lo + time.Duration(rng.Int64N(int64(hi-lo)))
	}
	// pause sleeps d, or less when the span ends first; false after the end.
	pause := func(d time.Duration) bool {
		if left := time.Until(end); d > left {
			d = max(left, 0)
		}
		time.Sleep(d)
		return time.Now().Before(end)
	}
	var chaos sync.WaitGroup
	chaos.Go(func() { // adapters
		rng := rand.New(rand.NewPCG(seed, 1))
		for pause(between(rng, time.Second, 5*time.Second)) {
			i := rng.IntN(len(homes))
			chaosMu.Lock()
			if !down[i] {
				if kids := children(homes[i].run.Process.Pid); len(kids) > 0 {
					syscall.Kill(kids[rng.IntN(len(kids))], syscall.SIGKILL)
					action("adapter SIGKILL " + homes[i].name)
				}
			}
			chaosMu.Unlock()
		}
	})
	chaos.Go(func() { // daemons
		rng := rand.New(rand.NewPCG(seed, 2))
		for pause(between(rng, 4*time.Second, 12*time.Second)) {
			i := rng.IntN(len(homes))
			h := homes[i]
			chaosMu.Lock()
			kids := children(h.run.Process.Pid)
			h.kill()
			down[i] = true
			chaosMu.Unlock()
			mu.Lock()
			dupDone[i] += dupNow[i]
			dupNow[i] = 0
			mu.Unlock()
			action("daemon SIGKILL " + h.name)
			// Its adapters notice the host is gone (lifeline) and exit.
			watch.Go(func() {
				deadline := time.Now().Add(20 * time.Second)
				for _, p := range kids {
					for syscall.Kill(p, 0) == nil && time.Now().Before(deadline) {
						time.Sleep(50 * time.Millisecond)
					}
					if syscall.Kill(p, 0) == nil {
						t.Errorf("%s's adapter process %d still runs 20 s after its daemon was killed", h.name, p)
					}
				}
			})
			time.Sleep(between(rng, time.Second, 8*time.Second))
			chaosMu.Lock()
			err := h.launch()
			down[i] = err != nil
			chaosMu.Unlock()
			if err != nil {
				t.Errorf("restart after SIGKILL: %v", err)
				return
			}
		}
	})
	for k, name := range []string{"git", "mail", "matrix"} {
		p := srv.byName()[name]
		chaos.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(3+k)))
			for pause(between(rng, 5*time.Second, 20*time.Second)) {
				if err := p.Stop(); err != nil {
					t.Errorf("stop %s: %v", name, err)
					return
				}
				action(name + " stop")
				time.Sleep(between(rng, time.Second, 8*time.Second))
				if err := p.Start(); err != nil {
					t.Errorf("restart %s: %v", name, err)
					return
				}
			}
		})
	}
	for time.Now().Before(end) {
		for i := range homes {
			chaosMu.Lock()
			up := !down[i]
			chaosMu.Unlock()
			if up {
				readDup(i)
			}
		}
		time.Sleep(500 * time.Millisecond) // the duplicate counters' reading, not a wait for a condition
	}
	chaos.Wait()
	if t.Failed() {
		t.FailNow()
	}
	wg.Wait()               // the senders are paced over the span: done by now, or soon
	recovered := time.Now() // every server and daemon is up, the last message sent

	// Drain: every accepted message in each recipient's inbox.
	mu.Lock()
	owed := make([]map[string]bool, len(homes))
	for i := range owed {
		owed[i] = map[string]bool{}
	}
	for text, m := range msgs {
		if m.accepted {
			r.accepted++
			for _, to := range m.to {
				owed[to][text] = true
				r.expected++
			}
		}
	}
	mu.Unlock()
	drainLimit := 5*time.Minute + time.Duration(n)*60*time.Millisecond
	inboxes := make([][]api.Message, len(homes))
	testenv.WaitFor(t, "every accepted message in its recipients' inboxes", drainLimit, func() bool {
		missing := 0
		for i, h := range homes {
			inboxes[i] = allMessages(t, h)
			have := map[string]bool{}
			for _, m := range inboxes[i] {
				have[m.Text] = true
			}
			for text := range owed[i] {
				if !have[text] {
					missing++
				}
			}
		}
		if missing > 0 && time.Since(recovered) > drainLimit-time.Second {
			for i := range homes {
				var miss []string
				for text := range owed[i] {
					if !slices.ContainsFunc(inboxes[i], func(m api.Message) bool { return m.Text == text }) {
						miss = append(miss, text)
					}
				}
				sort.Strings(miss)
				t.Logf("%s misses %d: %.10q", homes[i].name, len(miss), miss)
			}
		}
		return missing == 0
	})
	var last time.Time
	for i := range homes {
		for _, m := range inboxes[i] {
			if owed[i][m.Text] && m.Received.After(last) {
				last = m.Received
			}
		}
	}
	r.drain = max(last.Sub(recovered), 0)
	// The slowest deliveries, for whoever reads a long drain.
	type late struct {
		to   string
		m    api.Message
		took time.Duration
	}
	var lates []late
	for i, h := range homes {
		for _, m := range inboxes[i] {
			lates = append(lates, late{h.name, m, m.Received.Sub(m.Sent)})
		}
	}
	slices.SortFunc(lates, func(a, b late) int { return cmp.Compare(b.took, a.took) })
	for _, l := range lates[:min(5, len(lates))] {
		t.Logf("slow: %q to %s by %s in %v (sent %s, received %s)", l.m.Text, l.to, l.m.Path, l.took.Round(time.Millisecond),
			l.m.Sent.Format("15:04:05.000"), l.m.Received.Format("15:04:05.000"))
	}

	// The outboxes empty once every copy is acked: late copies of
	// delivered messages come now, if any.
	testenv.WaitFor(t, "every outbox empty", 3*time.Minute, func() bool {
		for _, h := range homes {
			st, err := h.client().Status(context.Background())
			if err != nil || st.Outbox > 0 {
				return false
			}
		}
		return true
	})
	for i, h := range homes {
		readDup(i)
		inboxes[i] = allMessages(t, h)
		r.duplicates += dupDone[i] + dupNow[i]
	}

	// Exactly once, and in each sender's order.
	for i, h := range homes {
		seen := map[string]int{}
		type key struct {
			from   string
			direct bool
		}
		order := map[key][]api.Message{}
		for _, m := range inboxes[i] {
			cm, ours := msgs[m.Text]
			if !ours {
				t.Errorf("%s's inbox holds a message nobody sent: %.60q", h.name, m.Text)
				continue
			}
			seen[m.Text]++
			if !slices.Contains(cm.to, i) {
				t.Errorf("%s got %q, which was not for it", h.name, m.Text)
			}
			r.paths[pathKind(m.Path)]++
			k := key{m.From, m.Direct}
			order[k] = append(order[k], m)
		}
		for text, c := range seen {
			if c > 1 {
				t.Errorf("%s sees %q %d times, want once", h.name, text, c)
			}
			if msgs[text].accepted {
				r.delivered++
			} else {
				r.inFlightArrived++
			}
		}
		for k, ms := range order {
			slices.SortFunc(ms, func(a, b api.Message) int { return cmp.Compare(a.SenderSeq, b.SenderSeq) })
			for j := 1; j < len(ms); j++ {
				a, b := msgs[ms[j-1].Text], msgs[ms[j].Text]
				if ms[j-1].SenderSeq == ms[j].SenderSeq {
					t.Errorf("%s: two messages from %s with sender_seq %d", h.name, k.from, ms[j].SenderSeq)
				} else if a.index > b.index {
					t.Errorf("%s: sender_seq puts %q (seq %d, sent %s, by %s) before %q (seq %d, sent %s, by %s): not the order they were sent", h.name,
						ms[j-1].Text, ms[j-1].SenderSeq, ms[j-1].Sent.Format("15:04:05.000"), ms[j-1].Path,
						ms[j].Text, ms[j].SenderSeq, ms[j].Sent.Format("15:04:05.000"), ms[j].Path)
				}
			}
		}
	}
	r.inFlight = r.sent - r.accepted
	r.elapsed = time.Since(start)
	return r
}

// pathKind is how a message came: the channel, a friend's mailbox, or
// live (lan, direct, ...).
func pathKind(p string) string {
	switch {
	case strings.HasPrefix(p, "channel:"):
		return p
	case strings.HasPrefix(p, "mailbox:"):
		return "mailbox"
	}
	return "live"
}
