package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/testenv"
)

// BenchmarkDaemon measures, with the dir adapter: start-up time to "ready",
// idle RSS and CPU of the daemon and its adapter process, and API send →
// delivery on another local node over the direct path (p50/p99).
//
//	go test ./cmd/remora -run '^$' -bench Daemon -benchtime 200x
func BenchmarkDaemon(b *testing.B) {
	a, c := newHome(b, "alice"), newHome(b, "bob")
	shared := b.TempDir()
	for _, h := range []*home{a, c} {
		addFolderChannel(h, shared)
	}
	start := time.Now()
	a.start()
	ready := time.Since(start)
	c.start()
	id := strings.Fields(a.ok("circle", "create", "bench"))[1]
	if out := c.ok("join", inviteCode(a.ok("invite", "--in-person")), "--timeout", "60s"); !strings.Contains(out, "joined") {
		b.Fatal(out)
	}
	ctx := context.Background()
	testenv.WaitFor(b, "a direct path", 60*time.Second, func() bool {
		p, err := a.client().Peers(ctx)
		return err == nil && len(p) == 1 && p[0].Path != "channel"
	})

	// Idle: 10 s with nothing to do.
	pids := append([]int{a.run.Process.Pid}, children(a.run.Process.Pid)...)
	cpu0 := cpuTicks(pids)
	time.Sleep(10 * time.Second)
	cpu1 := cpuTicks(pids)
	daemonRSS := rssKB(a.run.Process.Pid)
	var adapterRSS int
	for _, p := range pids[1:] {
		adapterRSS += rssKB(p)
	}

	var lat []time.Duration
	after := int64(0)
	if msgs, err := c.client().Messages(ctx, 0, 0); err == nil && len(msgs) > 0 {
		after = msgs[len(msgs)-1].Seq
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		text := "bench " + strconv.Itoa(i)
		if _, err := a.client().Send(ctx, api.SendRequest{Circle: id, Text: text}); err != nil {
			b.Fatal(err)
		}
		for found := false; !found; {
			msgs, err := c.client().Messages(ctx, after, 10*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			for _, m := range msgs {
				after = m.Seq
				found = found || m.Text == text
			}
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	// ResetTimer drops reported metrics, so all are reported here.
	b.ReportMetric(float64(ready.Milliseconds()), "ms-to-ready")
	b.ReportMetric(float64(daemonRSS)/1024, "MB-daemon-idle-RSS")
	b.ReportMetric(float64(adapterRSS)/1024, "MB-adapter-idle-RSS")
	b.ReportMetric(float64(cpu1-cpu0)/10, "%CPU-idle") // ticks are 10 ms; 10 s window
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "ms-p50")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "ms-p99")
}

// children lists pid's child processes (started from any of its threads).
func children(pid int) []int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

func rssKB(pid int) int {
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

// cpuTicks sums utime+stime (clock ticks, 100/s) of the processes.
func cpuTicks(pids []int) int {
	total := 0
	for _, p := range pids {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		u, _ := strconv.Atoi(f[11])
		st, _ := strconv.Atoi(f[12])
		total += u + st
	}
	return total
}
