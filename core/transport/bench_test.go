package transport

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/remora-p2p/remora/testenv/benchdoc"
)

// Benchmarks recorded in BENCHMARKS.md. Run:
//   go test -run '^$' -bench Bulk -benchtime 20x -count 3 ./core/transport/

const chunk = 1 << 20

type variant struct {
	name   string
	listen string
	stack  stackConfig
}

var variants = []variant{
	{"tcp-tls-yamux", "/ip4/127.0.0.1/tcp/0", stackConfig{}},
	{"tcp-tls-yamux-stock", "/ip4/127.0.0.1/tcp/0", stackConfig{noCoalesce: true}},
	{"tcp-noise-yamux", "/ip4/127.0.0.1/tcp/0", stackConfig{noiseFirst: true}},
	{"tcp-noise-yamux-stock", "/ip4/127.0.0.1/tcp/0", stackConfig{noiseFirst: true, noCoalesce: true}},
	{"tcp-tls-yamux-win4M", "/ip4/127.0.0.1/tcp/0", stackConfig{yamuxWindow: 4 << 20}},
	{"tcp-tls-yamux-readbuf64K", "/ip4/127.0.0.1/tcp/0", stackConfig{yamuxReadBuf: 64 << 10}},
	{"tcp-tls-yamux-frame256K", "/ip4/127.0.0.1/tcp/0", stackConfig{yamuxMaxFrame: 256 << 10}},
	{"quic", "/ip4/127.0.0.1/udp/0/quic-v1", stackConfig{}},
}

func benchPair(b testing.TB, v variant) (a, c *Transport) {
	b.Helper()
	var mu sync.Mutex
	ids := map[peer.ID]bool{}
	allow := func(p peer.ID) bool { mu.Lock(); defer mu.Unlock(); return ids[p] }
	mk := func() *Transport {
		t, err := New(context.Background(), Options{Identity: benchKey(), ListenAddrs: []string{v.listen}, Allow: allow, MaxMessageSize: 8 << 20, stack: v.stack})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { t.Close() })
		return t
	}
	a, c = mk(), mk()
	mu.Lock()
	ids[a.ID()], ids[c.ID()] = true, true
	mu.Unlock()
	var addrs []ma.Multiaddr
	for _, ad := range c.Addrs() {
		addrs = append(addrs, ad.Multiaddr)
	}
	a.AddAddrs(c.ID(), addrs, peerstore.TempAddrTTL)
	if _, err := a.Connect(context.Background(), c.ID()); err != nil {
		b.Fatal(err)
	}
	return a, c
}

func benchKey() ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

// BenchmarkBulk interleaves, in every op, 8 MiB over a raw loopback TCP
// socket, 8 MiB over one stream of the variant's stack, and 8 × 1 MiB Sends
// (acked, 4 in parallel), and reports each one's MB/s and the two ratios to
// raw TCP. Interleaving at this grain makes the ratio robust against the
// load of other processes on a shared machine. It also reports the cores
// each path kept busy and the cipher ceiling (ceiling-%raw): the best ratio
// any encrypted stream could reach on this machine if it cost nothing but
// raw TCP's CPU plus one seal and one open of every byte.
func BenchmarkBulk(b *testing.B) {
	results := map[string]bulkResult{}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			raw := newRawSink(b)
			a, c := benchPair(b, v)
			c.Handle(func(context.Context, peer.ID, []byte) error { return nil })
			str := newStreamSink(b, a, c)
			results[v.name] = runBulk(b, v, raw, str, a, c.ID(), cpuTime)
		})
	}
	writeBulk(b, "throughput", "go test -run '^$' -bench 'Bulk$' -benchtime 20x ./core/transport/", "one process", variants, results)
}

// bulkResult is what runBulk measured (its last, largest run).
type bulkResult struct {
	rawMBps, streamMBps, sendMBps  float64
	streamPct, sendPct, ceilingPct float64
	streamCPUPct                   float64
}

// stackLabel names a variant for readers: which one ships, which is
// libp2p's default.
func stackLabel(name string) string {
	switch name {
	case "tcp-tls-yamux":
		return "TCP+TLS+yamux, coalesced (shipped)"
	case "tcp-noise-yamux-stock":
		return "TCP+Noise+yamux (libp2p default)"
	}
	return name
}

// writeBulk puts a bulk run's table into BENCHMARKS.md and its plot into
// plots/ (testenv/benchdoc): every stack beside libp2p's default and the
// cipher ceiling measured in the same run.
func writeBulk(b *testing.B, section, command, where string, vs []variant, results map[string]bulkResult) {
	if len(results) == 0 {
		return
	}
	var md strings.Builder
	fmt.Fprintf(&md, "Run %s (%s); command:\n\n    %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), where, command)
	md.WriteString("| stack | raw TCP MB/s | stream MB/s | stream % raw | stream % raw CPU | Send MB/s | Send % raw | cipher ceiling % raw |\n|---|---|---|---|---|---|---|---|\n")
	var labels []string
	stream := benchdoc.Series{Name: "stream % of raw TCP"}
	send := benchdoc.Series{Name: "Send % of raw TCP"}
	ceiling := benchdoc.Series{Name: "cipher ceiling % of raw TCP"}
	for _, v := range vs {
		r, ok := results[v.name]
		if !ok {
			continue
		}
		fmt.Fprintf(&md, "| %s | %.0f | %.0f | %.1f | %.1f | %.0f | %.1f | %.0f |\n", stackLabel(v.name), r.rawMBps, r.streamMBps, r.streamPct, r.streamCPUPct, r.sendMBps, r.sendPct, r.ceilingPct)
		labels = append(labels, v.name)
		stream.Y, send.Y, ceiling.Y = append(stream.Y, r.streamPct), append(send.Y, r.sendPct), append(ceiling.Y, r.ceilingPct)
	}
	fmt.Fprintf(&md, "\n![throughput by stack](plots/%s.svg)\n", section)
	benchdoc.Section(b, section, md.String())
	benchdoc.Bars(b, section+".svg", "Throughput by stack, "+where, "% of raw loopback TCP", labels, stream, send, ceiling)
}

// runBulk is the measuring loop of the bulk benchmarks: a sends to peer
// over raw, over str and with Send; cpu is the CPU time of both ends.
func runBulk(b *testing.B, v variant, raw, str sink, a *Transport, to peer.ID, cpu func() time.Duration) bulkResult {
	const block = 8 * chunk
	buf := make([]byte, chunk)
	cipherMBps := sealRate(b, v.stack.noiseFirst)
	var tRaw, tStream, tSend time.Duration
	var cRaw, cStream, cSend time.Duration
	b.SetBytes(3 * block)
	b.ResetTimer()
	for range b.N {
		c0 := cpu()
		tRaw += timeBlock(b, raw, buf, block)
		c1 := cpu()
		tStream += timeBlock(b, str, buf, block)
		c2 := cpu()
		cRaw += c1 - c0
		cStream += c2 - c1
		start := time.Now()
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for range block / chunk / 4 {
					if err := a.Send(context.Background(), to, buf); err != nil {
						b.Error(err)
					}
				}
			})
		}
		wg.Wait()
		tSend += time.Since(start)
		cSend += cpu() - c2
	}
	b.StopTimer()
	mbps := func(d time.Duration) float64 { return float64(b.N) * block / d.Seconds() / 1e6 }
	b.ReportMetric(mbps(tRaw), "raw-MB/s")
	b.ReportMetric(mbps(tStream), "stream-MB/s")
	b.ReportMetric(mbps(tSend), "send-MB/s")
	b.ReportMetric(100*tRaw.Seconds()/tStream.Seconds(), "stream-%raw")
	b.ReportMetric(100*tRaw.Seconds()/tSend.Seconds(), "send-%raw")
	// CPU time (user+system, both ends) per byte is what the stack costs;
	// unlike wall time it barely moves with the load of other processes.
	b.ReportMetric(100*cRaw.Seconds()/cStream.Seconds(), "stream-%raw-cpu")
	b.ReportMetric(100*cRaw.Seconds()/cSend.Seconds(), "send-%raw-cpu")
	// The cipher ceiling: an encrypted stream needs at least the CPU raw
	// TCP needs plus one seal and one open per byte, and has the machine's
	// cores for it. No framing, copies or scheduling are counted, so no
	// stack can reach it.
	rawCores := cRaw.Seconds() / tRaw.Seconds()
	b.ReportMetric(rawCores, "raw-cores")
	b.ReportMetric(cStream.Seconds()/tStream.Seconds(), "stream-cores")
	b.ReportMetric(100*float64(runtime.NumCPU())/(rawCores+2*mbps(tRaw)/cipherMBps), "ceiling-all-cores-%raw")
	b.ReportMetric(cipherMBps, "cipher-MB/s/core")
	// With the cores the stream actually had (on a loaded machine the
	// process gets fewer than runtime.NumCPU, which made the ceiling read
	// over 100 %), an ideal stack costs raw TCP's CPU per byte plus a seal
	// and an open: that is the most it could move, as a share of raw.
	streamCores := cStream.Seconds() / tStream.Seconds()
	ceiling := 100 * min(streamCores, float64(runtime.NumCPU())) / (rawCores + 2*mbps(tRaw)/cipherMBps)
	b.ReportMetric(ceiling, "ceiling-%raw")
	return bulkResult{rawMBps: mbps(tRaw), streamMBps: mbps(tStream), sendMBps: mbps(tSend),
		streamPct: 100 * tRaw.Seconds() / tStream.Seconds(), sendPct: 100 * tRaw.Seconds() / tSend.Seconds(),
		ceilingPct: ceiling, streamCPUPct: 100 * cRaw.Seconds() / cStream.Seconds()}
}

// sealRate is the best single-core seal rate in MB/s of the record cipher the
// stack uses: AES-128-GCM on 16 KiB records (TLS 1.3 and QUIC with AES
// hardware), or ChaCha20-Poly1305 on 64 KiB frames (Noise).
func sealRate(b *testing.B, noise bool) float64 {
	var aead cipher.AEAD
	var err error
	size := 16 << 10
	if noise {
		aead, err = chacha20poly1305.New(make([]byte, chacha20poly1305.KeySize))
		size = 65519
	} else {
		var blk cipher.Block
		if blk, err = aes.NewCipher(make([]byte, 16)); err == nil {
			aead, err = cipher.NewGCM(blk)
		}
	}
	if err != nil {
		b.Fatal(err)
	}
	nonce := make([]byte, aead.NonceSize())
	in := make([]byte, size)
	out := make([]byte, 0, size+aead.Overhead())
	// The best of five rounds: what the core can do when the scheduler
	// leaves it alone, which makes the ceiling as generous as it can be.
	const total = 16 << 20
	best := 0.0
	for range 5 {
		start := time.Now()
		for done := 0; done < total; done += size {
			out = aead.Seal(out[:0], nonce, in, nil)
		}
		best = max(best, total/time.Since(start).Seconds()/1e6)
	}
	return best
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sink is a byte stream whose far end reads blocks and acks each with a byte.
type sink struct {
	w   io.Writer
	ack io.Reader
}

// timeBlock writes n bytes to s and waits for the far end's ack.
func timeBlock(b *testing.B, s sink, buf []byte, n int) time.Duration {
	start := time.Now()
	for sent := 0; sent < n; sent += len(buf) {
		if _, err := s.w.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := io.ReadFull(s.ack, make([]byte, 1)); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// sinkReadSize is the read size of both sinks: io.Copy's 32 KiB, what a
// plain application reading a socket uses (and what the lab note's 790 MB/s
// raw TCP baseline used).
var sinkReadSize = 32 << 10

// serveSink reads blocks of 8 MiB from r, sinkReadSize at a time, and acks
// each on w.
func serveSink(r io.Reader, w io.Writer) {
	buf := make([]byte, sinkReadSize)
	got := 0
	for {
		n, err := r.Read(buf)
		got += n
		for got >= 8*chunk {
			got -= 8 * chunk
			if _, err := w.Write([]byte{1}); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func newRawSink(b *testing.B) sink {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		serveSink(c, c)
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return sink{w: c, ack: c}
}

func newStreamSink(b *testing.B, a, c *Transport) sink {
	c.h.SetStreamHandler("/bench/sink", func(s network.Stream) {
		defer s.Close()
		serveSink(s, s)
	})
	s, err := a.h.NewStream(context.Background(), c.ID(), "/bench/sink")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Reset() })
	return sink{w: s, ack: s}
}

// BenchmarkSendLatency: one 1 KiB Send with its ack, one at a time; reports
// p50 and p99 in microseconds.
func BenchmarkSendLatency(b *testing.B) {
	for _, v := range []variant{variants[0], variants[len(variants)-1]} {
		b.Run(v.name, func(b *testing.B) {
			a, c := benchPair(b, v)
			c.Handle(func(context.Context, peer.ID, []byte) error { return nil })
			msg := make([]byte, 1024)
			if err := a.Send(context.Background(), c.ID(), msg); err != nil { // warm the pool
				b.Fatal(err)
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				if err := a.Send(context.Background(), c.ID(), msg); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			reportLatency(b, lat)
		})
	}
}

// BenchmarkSendNewStream is BenchmarkSendLatency with a fresh stream per
// message (the pool emptied before each Send): what reuse saves.
func BenchmarkSendNewStream(b *testing.B) {
	a, c := benchPair(b, variants[0])
	c.Handle(func(context.Context, peer.ID, []byte) error { return nil })
	msg := make([]byte, 1024)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		a.pool.drop(c.ID())
		start := time.Now()
		if err := a.Send(context.Background(), c.ID(), msg); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	reportLatency(b, lat)
}

// reportLatency reports the median and 99th percentile of lat in µs.
func reportLatency(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
