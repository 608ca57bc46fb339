package transport

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/sec"
)

// recordingConn is a net.Conn that records each Write call.
type recordingConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
	fail   error
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return 0, c.fail
	}
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

func (c *recordingConn) sizes() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var s []int
	for _, w := range c.writes {
		s = append(s, len(w))
	}
	return s
}

func (c *recordingConn) joined() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Join(c.writes, nil)
}

// recordLayer stands in for crypto/tls: it writes p to the connection
// below in records of at most 16 KiB, one Write per record.
type recordLayer struct {
	net.Conn
	network.ConnSecurity
}

func (r recordLayer) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), 16<<10)
		if _, err := r.Conn.Write(p[:k]); err != nil {
			return n, err
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

func newCoalesced(below net.Conn) (*coalescedConn, *gatherConn) {
	g := &gatherConn{Conn: below}
	var s sec.SecureConn = recordLayer{Conn: g}
	return &coalescedConn{SecureConn: s, raw: g}, g
}

func TestCoalescedWrites(t *testing.T) {
	cases := []struct {
		name   string
		writes []int // sizes of successive Writes on the secure connection
		want   []int // sizes of the writes that reach the socket
	}{
		{"small write passes through", []int{100}, []int{100}},
		{"one record passes through", []int{16 << 10}, []int{16 << 10}},
		{"records of one write are gathered", []int{64<<10 + 12}, []int{64<<10 + 12}},
		{"each write is flushed before it returns", []int{40 << 10, 100, 40 << 10}, []int{40 << 10, 100, 40 << 10}},
		{"a write larger than the buffer is split near its size", []int{600 << 10}, []int{256 << 10, 256 << 10, 88 << 10}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recordingConn{}
			c, g := newCoalesced(rec)
			var sent []byte
			for i, n := range tc.writes {
				p := bytes.Repeat([]byte{byte('a' + i)}, n)
				sent = append(sent, p...)
				if got, err := c.Write(p); err != nil || got != n {
					t.Fatalf("Write(%d) = %d, %v", n, got, err)
				}
			}
			if got := rec.sizes(); !slices.Equal(got, tc.want) {
				t.Errorf("socket writes %v, want %v", got, tc.want)
			}
			if !bytes.Equal(rec.joined(), sent) {
				t.Error("bytes on the socket differ from the bytes written")
			}
			if g.buf != nil || g.holds != 0 {
				t.Errorf("after the writes: buffer kept (%v) or holds %d", g.buf != nil, g.holds)
			}
		})
	}
}

func TestCoalescedWriteError(t *testing.T) {
	boom := errors.New("connection reset")
	rec := &recordingConn{fail: boom}
	c, g := newCoalesced(rec)
	n, err := c.Write(make([]byte, 64<<10))
	if !errors.Is(err, boom) || n != 0 {
		t.Fatalf("Write on a failing socket = %d, %v; want 0, %v", n, err, boom)
	}
	if g.buf != nil || g.holds != 0 {
		t.Errorf("after a failed write: buffer kept (%v) or holds %d", g.buf != nil, g.holds)
	}
	// A small write fails the same way, straight from the socket.
	if _, err := c.Write([]byte("x")); !errors.Is(err, boom) {
		t.Errorf("small Write = %v, want %v", err, boom)
	}
}

// TestCoalescedConcurrentWriters: the security layer may write from another
// goroutine (an alert, a key update) while a large Write is gathered; no
// byte is lost and each record stays whole.
func TestCoalescedConcurrentWriters(t *testing.T) {
	rec := &recordingConn{}
	c, g := newCoalesced(rec)
	var wg sync.WaitGroup
	const big, small, rounds = 100 << 10, 7, 50
	wg.Go(func() {
		for range rounds {
			if _, err := c.Write(bytes.Repeat([]byte{'B'}, big)); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Go(func() {
		for range rounds {
			if _, err := g.Write(bytes.Repeat([]byte{'s'}, small)); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	all := rec.joined()
	if got, want := len(all), rounds*(big+small); got != want {
		t.Fatalf("%d bytes reached the socket, want %d", got, want)
	}
	if n := bytes.Count(all, []byte{'s'}); n != rounds*small {
		t.Errorf("%d bytes of the small writer arrived, want %d", n, rounds*small)
	}
	// Small writes never land inside a record: the fake cuts each 100 KiB
	// Write into 16 KiB records and a 4 KiB tail, so every run of B's
	// between small writes is a whole number of 4 KiB.
	for run := range strings.SplitSeq(string(all), "s") {
		if len(run)%(4<<10) != 0 {
			t.Fatalf("a record was split: a run of %d bytes", len(run))
		}
	}
}

// TestCoalescedStreamIntegrity sends 4 MiB over a real libp2p stream with
// each security transport, with and without coalescing, checks that the
// bytes arrive intact, and that coalescing cuts the process's write(2)
// calls (counted in /proc/self/io).
func TestCoalescedStreamIntegrity(t *testing.T) {
	const size = 4 << 20
	payload := make([]byte, size)
	rand.Read(payload)
	want := sha256.Sum256(payload)
	for _, noise := range []bool{false, true} {
		name := map[bool]string{false: "tls", true: "noise"}[noise]
		t.Run(name, func(t *testing.T) {
			writes := map[bool]int64{}
			for _, stock := range []bool{true, false} {
				a, c := benchPair(t, variant{listen: "/ip4/127.0.0.1/tcp/0", stack: stackConfig{noiseFirst: noise, noCoalesce: stock}})
				got := make(chan [32]byte, 1)
				c.h.SetStreamHandler("/test/sink", func(s network.Stream) {
					defer s.Close()
					h := sha256.New()
					if _, err := io.CopyN(h, s, size); err != nil {
						t.Error(err)
					}
					got <- [32]byte(h.Sum(nil))
				})
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				s, err := a.h.NewStream(ctx, c.ID(), "/test/sink")
				if err != nil {
					t.Fatal(err)
				}
				before := writeSyscalls(t)
				for off := 0; off < size; off += 1 << 20 {
					if _, err := s.Write(payload[off : off+1<<20]); err != nil {
						t.Fatal(err)
					}
				}
				select {
				case h := <-got:
					if h != want {
						t.Fatalf("coalesce=%v: the payload arrived altered", !stock)
					}
				case <-ctx.Done():
					t.Fatalf("coalesce=%v: the payload did not arrive", !stock)
				}
				writes[stock] = writeSyscalls(t) - before
				s.Close()
			}
			t.Logf("write(2) calls for 4 MiB: stock %d, coalesced %d", writes[true], writes[false])
			if writes[false] >= writes[true] {
				t.Errorf("coalescing made %d write(2) calls, no fewer than the stock stack's %d", writes[false], writes[true])
			}
		})
	}
}

// writeSyscalls is the process's write-family syscall count so far.
func writeSyscalls(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Fatalf("reading the write(2) count: %v (this test needs Linux task I/O accounting)", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "syscw: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no syscw line in /proc/self/io")
	return 0
}
