package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/remora-p2p/remora/matrix/matrixtest"
	"github.com/remora-p2p/remora/testenv"
	"github.com/remora-p2p/remora/testenv/benchdoc"
	"github.com/remora-p2p/remora/testenv/gotosocial"
)

var (
	idleFor    = flag.Duration("idle", 5*time.Minute, "how long BenchmarkIdle samples an idle daemon")
	idleSettle = flag.Duration("idle-settle", 45*time.Second, "how long BenchmarkIdle lets a daemon settle after its first direct path before sampling")
)

// BenchmarkIdle measures what an idle daemon costs, as a new user would
// run it: alice's daemon (defaults, one circle of two, a direct path to
// bob) with the dir adapter alone, and with the four service adapters
// (imap, matrix, git, mastodon) against the real test servers; each with
// the built-in adapters in one process (adapter_processes = "shared", the
// default) and in one process per kind ("separate"). Over -idle
// (default 5 min) it reports the CPU time of the daemon and its adapter
// processes (utime+stime from /proc/PID/stat, so other load on the
// machine does not count) as % of one core, and their summed RSS (mean and
// peak of 5 s samples).
//
//	REMORA_TESTENV=/tmp/remora-testenv go test ./cmd/remora -run '^$' -bench Idle -benchtime 1x -timeout 30m
func BenchmarkIdle(b *testing.B) {
	var cases []string
	results := map[string]idleSample{}
	for _, procs := range []string{"shared", "separate"} {
		b.Run("dir/"+procs, func(b *testing.B) {
			shared := b.TempDir()
			results[b.Name()] = idle(b, false, procs, func(h *home, i int) {
				h.ok("channel", "add", "folder", "--adapter", "dir", "--set", "path="+shared)
			})
			cases = append(cases, b.Name())
		})
	}
	for _, procs := range []string{"shared", "separate"} {
		b.Run("four/"+procs, func(b *testing.B) {
			results[b.Name()] = idle(b, true, procs, fourServices(b))
			cases = append(cases, b.Name())
		})
	}
	writeIdle(b, cases, results)
}

// writeIdle puts the run's table into BENCHMARKS.md and its memory plot
// into plots/ (testenv/benchdoc).
func writeIdle(b *testing.B, cases []string, results map[string]idleSample) {
	if len(cases) == 0 {
		return
	}
	var md strings.Builder
	fmt.Fprintf(&md, "Run %s, -idle %v (load average %s); command:\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), *idleFor, loadAvg())
	md.WriteString("    REMORA_TESTENV=/tmp/remora-testenv REMORA_BENCH_WRITE=1 go test ./cmd/remora -run '^$' -bench Idle -benchtime 1x -timeout 60m\n\n")
	md.WriteString("| case | CPU % of one core | RSS sum MB (peak) | PSS sum MB | anonymous MB | processes |\n|---|---|---|---|---|---|\n")
	var labels []string
	var rss, pss, anon benchdoc.Series
	rss.Name, pss.Name, anon.Name = "RSS sum", "PSS sum", "anonymous"
	for _, c := range cases {
		s := results[c]
		name := strings.TrimPrefix(c, "BenchmarkIdle/")
		fmt.Fprintf(&md, "| %s | %.3f | %.1f (%.1f) | %.1f | %.1f | %d |\n", name, s.cpuPercent, s.meanRSS, s.maxRSS, s.meanPSS, s.meanAnon, s.procs)
		labels = append(labels, name)
		rss.Y, pss.Y, anon.Y = append(rss.Y, s.meanRSS), append(pss.Y, s.meanPSS), append(anon.Y, s.meanAnon)
	}
	md.WriteString("\nPer process (mean over the window):\n\n")
	for _, c := range cases {
		fmt.Fprintf(&md, "- %s: %s\n", strings.TrimPrefix(c, "BenchmarkIdle/"), results[c].detail)
	}
	md.WriteString("\n![idle memory](plots/idle-memory.svg)\n")
	benchdoc.Section(b, "idle", md.String())
	benchdoc.Bars(b, "idle-memory.svg", "Idle daemon + adapter processes", "MB", labels, rss, pss, anon)
}

// loadAvg is the 1-minute load average, for the record.
func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "?"
}

// fourServices prepares an account per member on each real server and
// returns what adds the four channels to member i's home.
func fourServices(b *testing.B) func(h *home, i int) {
	gv := testenv.Need(b, "git", "REMORA_GIT_ROOT", "REMORA_GIT_DAEMON_URL")
	mv := testenv.Need(b, "mail", "REMORA_MAIL_IMAP", "REMORA_MAIL_CA", "REMORA_MAIL_DOMAIN", "REMORA_MAIL_PASSWORD_SUFFIX")
	xv := testenv.Need(b, "matrix", "REMORA_MATRIX_URL", "REMORA_MATRIX_SECRET")
	gts := gotosocial.Need(b)

	remote := newGitRepo(b, gv[0], gv[1], matrixtest.RandomName("idle-"))
	folder := matrixtest.RandomName("idle-")
	room := newMatrixRoom(b, xv[0], xv[1], 2, matrixtest.RandomName("idle "))
	accts := gts.NewAccounts(b, "alice", "bob")
	return func(h *home, i int) {
		h.ok("channel", "add", "repo", "--adapter", "git", "--set", "remote="+remote)
		pw := writeSecret(b, h, "mail.pw", "carol"+mv[3])
		h.ok("channel", "add", "mail", "--adapter", "imap", "--set", "mode=shared", "--set", "imap="+mv[0],
			"--set", "ca_file="+mv[1], "--set", "username=carol", "--set", "address=carol@"+mv[2], "--set", "folder="+folder,
			"--secret", "password=file:"+pw)
		room.add(b, h, i, "--id", string(room.room))
		tok := writeSecret(b, h, "masto.token", accts[i].Token)
		h.ok("channel", "add", "social", "--adapter", "mastodon", "--id", "social", "--set", "server="+gts.URL,
			"--set", fmt.Sprintf("accounts=[%s]", accts[1-i].Username), "--secret", "token=file:"+tok)
	}
}

// idle runs alice and bob with the channels addChannel gives them, forms
// their circle, waits for a direct path and then samples alice's processes.
func idle(b *testing.B, mail bool, procs string, addChannel func(h *home, i int)) idleSample {
	if mail { // no dovecot restart by the imap tests while we sample
		defer lockMail()()
	}
	hs := []*home{newHome(b, "alice"), newHome(b, "bob")}
	for i, h := range hs {
		h.level = "info"
		editConfig(b, h, func(c *Config) { c.AdapterProcesses = procs })
		addChannel(h, i)
		h.start()
	}
	formCircle(b, hs)
	a := hs[0]
	testenv.WaitFor(b, "a direct path", 2*time.Minute, func() bool {
		p, err := a.client().Peers(context.Background())
		return err == nil && len(p) == 1 && live(p[0])
	})
	time.Sleep(*idleSettle)

	s := sampleIdle(b, a.run.Process.Pid, *idleFor, 5*time.Second)
	b.ReportMetric(s.cpuPercent, "%CPU")
	b.ReportMetric(s.meanRSS, "MB-RSS-mean")
	b.ReportMetric(s.maxRSS, "MB-RSS-peak")
	b.ReportMetric(s.meanPSS, "MB-PSS-mean")
	b.ReportMetric(s.meanAnon, "MB-anon-mean")
	b.ReportMetric(float64(s.procs), "processes")
	b.Logf("%s: %s", b.Name(), s.detail)
	return s
}

// idleSample is what sampleIdle saw.
type idleSample struct {
	cpuPercent      float64 // of one core, over the window
	meanRSS, maxRSS float64 // MB, VmRSS of the processes summed per sample
	meanPSS         float64 // MB, their proportional set size summed (shared pages split)
	meanAnon        float64 // MB, their anonymous memory summed (heap, stacks)
	procs           int     // processes seen
	detail          string  // per process: command, CPU seconds, mean RSS
}

// sampleIdle samples pid and its children every step for d.
func sampleIdle(b *testing.B, pid int, d, step time.Duration) idleSample {
	type proc struct {
		name                 string
		first, last          int // CPU ticks
		rss, pss, anon, seen int // kB summed over samples
	}
	procs := map[int]*proc{}
	var sums []int
	var pssSum, anonSum int
	take := func() {
		total := 0
		for _, p := range append([]int{pid}, children(pid)...) {
			t := cpuTicks([]int{p})
			rss := rssKB(p)
			if rss == 0 {
				continue // gone
			}
			pr := procs[p]
			if pr == nil {
				pr = &proc{name: procName(p), first: t}
				procs[p] = pr
			}
			m := smapsKB(p)
			pr.last = t
			pr.rss += rss
			pr.pss += m["Pss"]
			pr.anon += m["Anonymous"]
			pr.seen++
			total += rss
			pssSum += m["Pss"]
			anonSum += m["Anonymous"]
		}
		sums = append(sums, total)
	}
	start := time.Now()
	take()
	for time.Since(start) < d {
		time.Sleep(min(step, d-time.Since(start)))
		take()
	}
	window := time.Since(start)
	var s idleSample
	ticks := 0
	var lines []string
	for p, pr := range procs {
		ticks += pr.last - pr.first
		n := float64(pr.seen) * 1024
		lines = append(lines, fmt.Sprintf("%s[%d] %.2fs CPU, RSS %.1f MB, PSS %.1f MB, anon %.1f MB",
			pr.name, p, float64(pr.last-pr.first)/100, float64(pr.rss)/n, float64(pr.pss)/n, float64(pr.anon)/n))
	}
	slices.Sort(lines)
	s.cpuPercent = float64(ticks) / 100 / window.Seconds() * 100
	total := 0
	for _, v := range sums {
		total += v
		s.maxRSS = max(s.maxRSS, float64(v)/1024)
	}
	s.meanRSS = float64(total) / float64(len(sums)) / 1024
	s.meanPSS = float64(pssSum) / float64(len(sums)) / 1024
	s.meanAnon = float64(anonSum) / float64(len(sums)) / 1024
	s.procs = len(procs)
	s.detail = fmt.Sprintf("%.0fs window, %d samples: %s", window.Seconds(), len(sums), strings.Join(lines, "; "))
	return s
}

// procName is "remora run" or "adapter NAME" for one of ours.
func procName(pid int) string {
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	f := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	for i, a := range f {
		if a == "adapter" && i+1 < len(f) {
			return "adapter " + f[i+1]
		}
		if a == "run" {
			return "daemon"
		}
	}
	return filepath.Base(f[0])
}

// smapsKB reads /proc/PID/smaps_rollup: Rss, Pss, Anonymous, ... in kB.
func smapsKB(pid int) map[string]int {
	out := map[string]int{}
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "smaps_rollup"))
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[2] == "kB" {
			n, _ := strconv.Atoi(f[1])
			out[strings.TrimSuffix(f[0], ":")] = n
		}
	}
	return out
}
