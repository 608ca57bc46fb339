package transport

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"
)

// benchPeerEnv makes the test binary a receiving peer of
// BenchmarkBulkProcesses; its value names the variant.
const benchPeerEnv = "REMORA_BENCH_PEER"

func init() {
	if name := os.Getenv(benchPeerEnv); name != "" {
		os.Exit(runBenchPeer(name))
	}
}

// benchPeerInfo is what the peer process prints on its first line.
type benchPeerInfo struct {
	ID    peer.ID
	Addrs []string
	Raw   string
}

// runBenchPeer serves a raw TCP sink, a stream sink and a Send handler
// until its stdin closes.
func runBenchPeer(name string) int {
	var v variant
	for _, x := range processVariants {
		if x.name == name {
			v = x
		}
	}
	if v.name == "" {
		os.Stderr.WriteString("unknown variant " + name + "\n")
		return 2
	}
	tr, err := New(context.Background(), Options{Identity: benchKey(), ListenAddrs: []string{v.listen}, Allow: func(peer.ID) bool { return true }, MaxMessageSize: 8 << 20, stack: v.stack})
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		return 1
	}
	defer tr.Close()
	tr.Handle(func(context.Context, peer.ID, []byte) error { return nil })
	tr.h.SetStreamHandler("/bench/sink", func(s network.Stream) {
		defer s.Close()
		serveSink(s, s)
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		return 1
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); serveSink(c, c) }()
		}
	}()
	info := benchPeerInfo{ID: tr.ID(), Raw: l.Addr().String()}
	for _, a := range tr.Addrs() {
		info.Addrs = append(info.Addrs, a.Multiaddr.String())
	}
	if err := json.NewEncoder(os.Stdout).Encode(info); err != nil {
		return 1
	}
	var one [1]byte
	os.Stdin.Read(one[:]) // the benchmark closes stdin when it is done
	return 0
}

// processVariants are the stacks BenchmarkBulkProcesses compares: the
// shipped one, TLS as it comes, libp2p's default (Noise) and QUIC.
var processVariants = []variant{variants[0], variants[1], variants[3], variants[len(variants)-1]}

// BenchmarkBulkProcesses is BenchmarkBulk with the receiving end in its own
// process, as between two nodes: each Go runtime has the machine's cores to
// itself. CPU time is the sum of both processes.
func BenchmarkBulkProcesses(b *testing.B) {
	results := map[string]bulkResult{}
	defer func() {
		writeBulk(b, "throughput-processes", "go test -run '^$' -bench 'BulkProcesses' -benchtime 20x ./core/transport/", "two processes", processVariants, results)
	}()
	for _, v := range processVariants {
		b.Run(v.name, func(b *testing.B) {
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), benchPeerEnv+"="+v.name)
			stdin, err := cmd.StdinPipe()
			if err != nil {
				b.Fatal(err)
			}
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				b.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { stdin.Close(); cmd.Wait() })
			var info benchPeerInfo
			line, err := bufio.NewReader(stdout).ReadBytes('\n')
			if err != nil {
				b.Fatalf("bench peer: %v", err)
			}
			if err := json.Unmarshal(line, &info); err != nil {
				b.Fatalf("bench peer said %q: %v", line, err)
			}

			a, err := New(context.Background(), Options{Identity: benchKey(), ListenAddrs: []string{v.listen}, Allow: func(p peer.ID) bool { return p == info.ID }, MaxMessageSize: 8 << 20, stack: v.stack})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { a.Close() })
			var addrs []ma.Multiaddr
			for _, s := range info.Addrs {
				addrs = append(addrs, ma.StringCast(s))
			}
			a.AddAddrs(info.ID, addrs, peerstore.TempAddrTTL)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := a.Connect(ctx, info.ID); err != nil {
				b.Fatal(err)
			}
			s, err := a.h.NewStream(ctx, info.ID, "/bench/sink")
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Reset() })
			rc, err := net.Dial("tcp", info.Raw)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { rc.Close() })
			pid := cmd.Process.Pid
			cpu := func() time.Duration { return cpuTime() + threadCPU(pid) }
			results[v.name] = runBulk(b, v, sink{w: rc, ack: rc}, sink{w: s, ack: s}, a, info.ID, cpu)
		})
	}
}

// threadCPU is the CPU time of all threads of process pid so far, in
// nanoseconds from /proc/PID/task/*/schedstat (getrusage cannot see a
// child that is still running).
func threadCPU(pid int) time.Duration {
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/schedstat")
	var sum time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			n, _ := strconv.ParseInt(f[0], 10, 64)
			sum += time.Duration(n)
		}
	}
	return sum
}
