package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/testenv"
)

// isolatedNet puts a daemon in a network namespace of its own (as root; as
// another user inside a user namespace too): it has no route to any peer,
// so everything reaches it through its channels, as for two friends who
// share a synced folder but cannot reach each other.
func isolatedNet() *syscall.SysProcAttr {
	if os.Geteuid() == 0 {
		return &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	}
	uid, gid := os.Getuid(), os.Getgid()
	return &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: uid, HostID: uid, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: gid, HostID: gid, Size: 1}},
	}
}

// sharedFolder is the path of h's first (dir) channel.
func sharedFolder(t testing.TB, h *home) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(h.dir, "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	var c Config
	if err := toml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	p, _ := c.Channels[0].Config["path"].(string)
	if p == "" {
		t.Fatalf("no dir channel in %s's config", h.name)
	}
	return p
}

// tree is a daemon and its adapter processes.
func (h *home) tree() []int {
	pid := h.run.Process.Pid
	return append([]int{pid}, children(pid)...)
}

func statusKB(pid int, field string) int {
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field+":" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

// rssNow is the resident memory of the daemons' process trees, in KiB.
func rssNow(hs ...*home) int {
	n := 0
	for _, h := range hs {
		for _, p := range h.tree() {
			n += statusKB(p, "VmRSS")
		}
	}
	return n
}

// resetPeak resets the peak resident memory (VmHWM) of the daemons' trees.
func resetPeak(t testing.TB, hs ...*home) {
	for _, h := range hs {
		for _, p := range h.tree() {
			if err := os.WriteFile(filepath.Join("/proc", strconv.Itoa(p), "clear_refs"), []byte("5"), 0); err != nil {
				t.Logf("reset the peak memory of pid %d: %v (the peak then includes the start-up)", p, err)
			}
		}
	}
}

// peakKB is the sum of the peak resident memory of the daemons' trees
// since resetPeak (an upper bound of the trees' peak), and of their
// adapter processes alone.
func peakKB(hs ...*home) (all, adapters int) {
	for _, h := range hs {
		for i, p := range h.tree() {
			n := statusKB(p, "VmHWM")
			all += n
			if i > 0 {
				adapters += n
			}
		}
	}
	return all, adapters
}

// channelCounter reads one counter of h's channels, summed.
func channelCounter(h *home, name string) int64 {
	chs, err := h.client().Channels(context.Background())
	if err != nil {
		return -1
	}
	var n int64
	for _, c := range chs {
		n += c.Counters[name]
	}
	return n
}

// attack is one of issue #20's attacks on a shared folder, made from
// outside: plant puts it in the folder; the daemons have noticed it when
// noticed holds for both.
type attack struct {
	name    string
	plant   func(t testing.TB, folder string)
	noticed func(h *home) bool
}

func bucketIn(folder string) string {
	return filepath.Join(folder, "log", time.Now().UTC().Format("2006010215"))
}

// The special files go into log/ (the reader) and board/ (presence). The
// board's are never opened (a board poll reads the presence slots by key),
// so the daemons notice the log's one.
func plantSpecial(t testing.TB, folder, name string, make func(path string) error) {
	t.Helper()
	for _, p := range []string{filepath.Join(bucketIn(folder), name), filepath.Join(folder, "board", name)} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := make(p); err != nil {
			t.Fatal(err)
		}
	}
}

// junk is 184 MiB of junk files named like items: 38 of 1 to 8 MiB in the
// log, 3,000 small ones in the log and on the board.
func plantJunk(t testing.TB, folder string) {
	t.Helper()
	rng := rand.New(rand.NewChaCha8([32]byte{20}))
	write := func(path string, n int) {
		b := make([]byte, n)
		for i := 0; i < n; i += 8 {
			v := rng.Uint64()
			for j := 0; j < 8 && i+j < n; j++ {
				b[i+j] = byte(v >> (8 * j))
			}
		}
		// As a sync tool writes: a temporary name, then a rename, so
		// that no file is seen half written.
		tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	total := 0
	for i := range 38 {
		n := (i%8+1)<<20 + 4096 // all over the default max_payload of 1 MiB
		write(filepath.Join(bucketIn(folder), fmt.Sprintf("junkbig%02d", i)), n)
		total += n
	}
	for i := range 3000 {
		n := 1024 + rng.IntN(11<<10)
		dir := bucketIn(folder)
		if i%3 == 2 {
			dir = filepath.Join(folder, "board")
		}
		write(filepath.Join(dir, fmt.Sprintf("junk%04d", i)), n)
		total += n
	}
	t.Logf("planted %d MiB of junk in %d files", total>>20, 3038)
}

var folderAttacks = []attack{
	{"symlink to /dev/zero", func(t testing.TB, f string) {
		plantSpecial(t, f, "zero", func(p string) error { return os.Symlink("/dev/zero", p) })
	}, func(h *home) bool { return channelCounter(h, "ignored_special") >= 1 }},
	{"FIFO", func(t testing.TB, f string) {
		plantSpecial(t, f, "fifo", func(p string) error { return syscall.Mkfifo(p, 0o644) })
	}, func(h *home) bool { return channelCounter(h, "ignored_special") >= 1 }},
	{"184 MiB of junk", plantJunk, func(h *home) bool {
		// The big files are skipped for their size; the small ones in
		// the log are read and dropped as no envelope of ours: 2,000,
		// all counted as received. The 1,000 on the board are never read
		// (a board poll reads the circle's presence slots by key). The reader reads
		// in order, so a message written during the flood waits behind
		// it: new messages are timed once the flood is read (how long
		// that took is logged: 2-86 s on a loaded machine under the race
		// detector), and memory is measured over the whole flood.
		return channelCounter(h, "ignored_oversize") >= 38 && channelCounter(h, "received") >= 2000
	}},
}

// exchange sends n messages from a to b in circle and returns how long
// each took from a's API to b's inbox, and from the moment its file
// appeared in folder to b's inbox (b's reader).
func exchange(t testing.TB, a, b *home, circle, folder, what string, n int) (total, reader []time.Duration) {
	t.Helper()
	ctx := context.Background()
	var after int64
	if msgs, err := b.client().Messages(ctx, 0, 0); err == nil && len(msgs) > 0 {
		after = msgs[len(msgs)-1].Seq
	}
	for i := range n {
		text := fmt.Sprintf("%s %d", what, i)
		before := logFiles(folder)
		t0 := time.Now()
		if _, err := a.client().Send(ctx, api.SendRequest{Circle: circle, Text: text}); err != nil {
			t.Fatalf("send %q: %v", text, err)
		}
		deadline := time.Now().Add(60 * time.Second)
		var got *api.Message
		for got == nil {
			if time.Now().After(deadline) {
				st, _ := b.client().Status(ctx)
				chs, _ := b.client().Channels(ctx)
				t.Logf("%q not read: %d item files in the folder (%d before the send)\n%s's status: %+v\nits channels: %+v", text, len(logFiles(folder)), len(before), b.name, st, chs)
				t.Fatalf("%q did not reach %s within 60s", text, b.name)
			}
			msgs, err := b.client().Messages(ctx, after, 5*time.Second)
			if err != nil {
				t.Fatalf("%s's messages: %v", b.name, err)
			}
			for _, m := range msgs {
				after = m.Seq
				if m.Text == text {
					got = &m
				}
			}
		}
		total = append(total, time.Since(t0))
		if time.Since(t0) > 10*time.Second {
			st, _ := b.client().Status(ctx)
			chs, _ := b.client().Channels(ctx)
			t.Logf("%q took %v: %+v\n%s's status: %+v\nits channels: %+v", text, time.Since(t0), *got, b.name, st, chs)
		}
		if !strings.HasPrefix(got.Path, "channel:") {
			t.Errorf("%q reached %s by %s, want through the folder", text, b.name, got.Path)
			continue
		}
		// The first file written after the send is the message (later
		// ones are acks and presence).
		var first time.Time
		for name, mt := range logFiles(folder) {
			if _, old := before[name]; !old && (first.IsZero() || mt.Before(first)) {
				first = mt
			}
		}
		if !first.IsZero() {
			reader = append(reader, got.Received.Sub(first))
		}
	}
	return total, reader
}

// logFiles lists the item files in folder's log/ with their times.
func logFiles(folder string) map[string]time.Time {
	out := map[string]time.Time{}
	buckets, _ := os.ReadDir(filepath.Join(folder, "log"))
	for _, bk := range buckets {
		files, _ := os.ReadDir(filepath.Join(folder, "log", bk.Name()))
		for _, f := range files {
			if fi, err := f.Info(); err == nil && fi.Mode().IsRegular() && !strings.HasPrefix(f.Name(), ".") {
				out[bk.Name()+"/"+f.Name()] = fi.ModTime()
			}
		}
	}
	return out
}

// stopTimed stops h's daemon with SIGTERM and returns how long it took to
// exit (a kill after 30s fails the test).
func stopTimed(t testing.TB, h *home) time.Duration {
	t.Helper()
	t0 := time.Now()
	h.run.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { h.run.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		h.run.Process.Kill()
		<-done
		t.Errorf("%s's daemon did not stop within 30s of SIGTERM", h.name)
	}
	return time.Since(t0)
}

// hostileResult is what one run of the folder attacks measured.
type hostileResult struct {
	idleKB, peakKB   int // both daemons' trees
	daemonGrowthKB   int // the larger of the two trees' growth (peak - idle)
	adapterIdleKB    int // their adapter processes
	adapterPeakKB    int
	logBytes         int             // both daemons' logs grew by
	latency, reader  []time.Duration // alice's send → bob's inbox; the folder → bob's inbox
	shutdown         time.Duration   // bob's, with the attacks in place
	restartLatency   []time.Duration
	restartReader    []time.Duration
	restartPeakKB    int // bob's tree after the restart, peak
	restartIdleKB    int
	finalShutdownMax time.Duration
}

// runFolderAttacks forms a circle of alice and bob over a shared folder
// (bob in his own network namespace, so every message comes through the
// folder), makes the attacks from outside, and measures: the daemons'
// memory against their idle figure, the latency of new messages, the
// growth of their logs, and bob's shutdown and restart with the attacks
// still in place.
func runFolderAttacks(t testing.TB, attacks []attack) hostileResult {
	a, b := newHome(t, "alice"), newHome(t, "bob")
	a.level, b.level = "info", "info" // what a user runs
	b.netns = true
	t.Cleanup(func() {
		if t.Failed() { // what the daemons said (info level: a few KiB)
			for _, h := range []*home{a, b} {
				l := h.log.Bytes()
				t.Logf("%s's log (last 16 KiB):\n%s", h.name, l[max(0, len(l)-16<<10):])
			}
		}
	})
	circle := circleOf2(t, a, b)
	folder := sharedFolder(t, a)
	exchange(t, a, b, circle, folder, "warm-up", 2)
	testenv.WaitFor(t, "bob only through the folder", 10*time.Second, func() bool {
		p, err := a.client().Peers(context.Background())
		return err == nil && len(p) == 1 && (p[0].Path == "channel" || p[0].Path == "none")
	})

	var r hostileResult
	r.idleKB = rssNow(a, b)
	idleOf := map[*home]int{a: rssNow(a), b: rssNow(b)}
	for _, h := range []*home{a, b} {
		for _, p := range h.tree()[1:] {
			r.adapterIdleKB += statusKB(p, "VmRSS")
		}
	}
	resetPeak(t, a, b)
	logs := a.log.Len() + b.log.Len()
	for _, at := range attacks {
		at.plant(t, folder)
	}
	planted := time.Now()
	for _, at := range attacks {
		for _, h := range []*home{a, b} {
			// The board is read every 30 s: a generous wait.
			testenv.WaitFor(t, h.name+" noticed the "+at.name, 3*time.Minute, func() bool { return at.noticed(h) })
			t.Logf("%s noticed the %s %v after it was planted", h.name, at.name, time.Since(planted).Round(time.Millisecond))
		}
	}
	r.latency, r.reader = exchange(t, a, b, circle, folder, "under attack", 5)
	r.peakKB, r.adapterPeakKB = peakKB(a, b)
	for _, h := range []*home{a, b} {
		p, _ := peakKB(h)
		r.daemonGrowthKB = max(r.daemonGrowthKB, p-idleOf[h])
	}
	r.logBytes = a.log.Len() + b.log.Len() - logs

	r.shutdown = stopTimed(t, b)
	b.start()
	r.restartLatency, r.restartReader = exchange(t, a, b, circle, folder, "after a restart", 3)
	r.restartIdleKB = rssNow(b)
	r.restartPeakKB, _ = peakKB(b)
	for _, h := range []*home{a, b} {
		r.finalShutdownMax = max(r.finalShutdownMax, stopTimed(t, h))
	}
	return r
}

func maxOf(ds []time.Duration) time.Duration { return slices.Max(ds) }

// TestHostileFolder: issue #20's three folder attacks at once (a symbolic
// link to /dev/zero and a FIFO in log/ and board/, 184 MiB of junk files),
// made from outside against two real daemons sharing a dir channel. The
// daemons keep their memory bounded, bob keeps reading new messages
// through the folder, the logs stay small, and shutdown is prompt, also
// after a restart with the attacks still in place. The bounds here are
// generous, so that a loaded machine cannot fail the test; the figures are
// measured by BenchmarkHostileFolder (BENCHMARKS.md).
func TestHostileFolder(t *testing.T) {
	if testing.Short() {
		t.Skip("runs daemons")
	}
	r := runFolderAttacks(t, folderAttacks)
	t.Log(r)
	// The race detector's shadow memory inflates every figure: the bound
	// is for a reader without limits (which grows past 1 GiB), the target
	// of 64 MiB is BenchmarkHostileFolder's.
	if g := r.daemonGrowthKB >> 10; g > 512 {
		t.Errorf("a daemon's memory grew by %d MiB under attack, want well under 512 MiB with the race detector (target 64 without)", g)
	}
	if r.logBytes > 4<<20 {
		t.Errorf("the logs grew by %d KiB under attack, want well under 4 MiB (target 1 MiB)", r.logBytes>>10)
	}
	if len(r.reader) == 0 || len(r.restartReader) == 0 {
		t.Errorf("no message could be timed from the folder to the inbox")
	} else if m := max(maxOf(r.reader), maxOf(r.restartReader)); m > 20*time.Second {
		t.Errorf("bob's reader took up to %v to read a new message from the folder, want well under 20s (poll interval 100ms)", m)
	}
	if r.shutdown > 15*time.Second || r.finalShutdownMax > 15*time.Second {
		t.Errorf("shutdown took %v (with the attacks in place) and %v (at the end), want well under 15s (target 5s)", r.shutdown, r.finalShutdownMax)
	}
}

func (r hostileResult) growthMiB() int { return (r.peakKB - r.idleKB) >> 10 }

func (r hostileResult) String() string {
	ms := func(ds []time.Duration) string {
		if len(ds) == 0 {
			return "-"
		}
		return maxOf(ds).Round(time.Millisecond).String()
	}
	return fmt.Sprintf("idle %d MiB, peak under attack %d MiB (+%d MiB, an upper bound: the sum of each process's peak; adapters %d → %d MiB; the larger daemon tree +%d MiB); logs +%d KiB; "+
		"under attack: send→inbox max %s, folder→inbox max %s; bob's shutdown %v; after bob's restart: send→inbox max %s, folder→inbox max %s, "+
		"bob %d MiB (peak %d MiB); final shutdown max %v",
		r.idleKB>>10, r.peakKB>>10, r.growthMiB(), r.adapterIdleKB>>10, r.adapterPeakKB>>10, r.daemonGrowthKB>>10, r.logBytes>>10, ms(r.latency), ms(r.reader), r.shutdown.Round(time.Millisecond),
		ms(r.restartLatency), ms(r.restartReader), r.restartIdleKB>>10, r.restartPeakKB>>10, r.finalShutdownMax.Round(time.Millisecond))
}

// BenchmarkHostileFolder measures issue #20's folder attacks one at a
// time and all at once, against two daemons built without the race
// detector: the daemons' memory above idle (MiB, an upper bound), the
// growth of their logs (KiB), how long bob's reader takes to read a new
// message from the folder (max, ms), and bob's shutdown with the attacks
// in place (ms).
//
//	go test ./cmd/remora -run '^$' -bench HostileFolder -benchtime 1x
func BenchmarkHostileFolder(b *testing.B) {
	cases := [][]attack{{folderAttacks[0]}, {folderAttacks[1]}, {folderAttacks[2]}, folderAttacks}
	for _, atts := range cases {
		name := "all"
		if len(atts) == 1 {
			name = atts[0].name
		}
		b.Run(name, func(b *testing.B) {
			var r hostileResult
			for b.Loop() {
				r = runFolderAttacks(b, atts)
			}
			b.Log(r)
			b.ReportMetric(float64(r.growthMiB()), "MiB-above-idle")
			b.ReportMetric(float64(r.daemonGrowthKB>>10), "MiB-above-idle-per-daemon")
			b.ReportMetric(float64(r.logBytes)/1024, "KiB-log")
			b.ReportMetric(float64(max(maxOf(r.reader), maxOf(r.restartReader)).Milliseconds()), "ms-reader-max")
			b.ReportMetric(float64(max(r.shutdown, r.finalShutdownMax).Milliseconds()), "ms-shutdown-max")
		})
	}
}
