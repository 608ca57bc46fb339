package birthday

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/remora-p2p/remora/testenv"
)

func TestPacket(t *testing.T) {
	tok, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewToken()
	p := packet(tok, 4242)
	tests := []struct {
		name string
		b    []byte
		tok  Token
		port uint16
		ok   bool
	}{
		{"ours", p, tok, 4242, true},
		{"other token", p, other, 0, false},
		{"short", p[:21], tok, 0, false},
		{"long", append(append([]byte{}, p...), 0), tok, 0, false},
		{"quic fixed bit set", append([]byte{0x40}, p[1:]...), tok, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port, ok := parse(tt.b, tt.tok)
			if ok != tt.ok || port != tt.port {
				t.Fatalf("parse = %d, %v; want %d, %v", port, ok, tt.port, tt.ok)
			}
		})
	}
	if p[0]&0x40 != 0 {
		t.Fatal("first byte has QUIC's fixed bit set: a QUIC stack sharing the socket would parse probes")
	}
}

// recorder is an "easy side" socket that records what it receives.
type recorder struct {
	mu   sync.Mutex
	from map[netip.AddrPort]int
	conn *net.UDPConn
}

func listen(t *testing.T) *recorder {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{from: map[netip.AddrPort]int{}, conn: c}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 64)
		for {
			_, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			r.mu.Lock()
			r.from[from]++
			r.mu.Unlock()
		}
	}()
	return r
}

func (r *recorder) sources() map[netip.AddrPort]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[netip.AddrPort]int{}
	for k, v := range r.from {
		out[k] = v
	}
	return out
}

// Without NATs on loopback: the hard side's sockets each send their opening
// packets to the easy side, and a probe sent to one of them (as a probe
// that guessed its public port would arrive) is the hit Wait returns.
func TestOpenAndHit(t *testing.T) {
	easy := listen(t)
	tok, _ := NewToken()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const n = 8
	h, err := Open(ctx, easy.conn.LocalAddr().(*net.UDPAddr).AddrPort(), tok, n)
	if err != nil {
		t.Fatal(err)
	}
	var srcs map[netip.AddrPort]int
	testenv.WaitFor(t, "opening packets from every socket", 5*time.Second, func() bool {
		srcs = easy.sources()
		total := 0
		for _, c := range srcs {
			total += c
		}
		return len(srcs) == n && total == n*OpenRepeat
	})
	var target netip.AddrPort
	for a, count := range srcs {
		if count != OpenRepeat {
			t.Errorf("%v sent %d opening packets, want %d", a, count, OpenRepeat)
		}
		target = a
	}
	// a stranger's packet (wrong token) is no hit
	other, _ := NewToken()
	easy.conn.WriteToUDPAddrPort(packet(other, target.Port()), target)
	easy.conn.WriteToUDPAddrPort(packet(tok, target.Port()), target)
	hit, err := h.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if hit.LocalPort != int(target.Port()) || hit.PublicPort != target.Port() {
		t.Fatalf("hit %+v, want local and public port %d", hit, target.Port())
	}
	// Wait closed the sockets: the winning port can be bound again
	c, err := net.ListenUDP("udp4", &net.UDPAddr{Port: hit.LocalPort})
	if err != nil {
		t.Fatalf("binding the winning port again: %v", err)
	}
	c.Close()
}

func TestWaitNoHit(t *testing.T) {
	easy := listen(t)
	tok, _ := NewToken()
	h, err := Open(context.Background(), easy.conn.LocalAddr().(*net.UDPAddr).AddrPort(), tok, 2)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := h.Wait(ctx); !errors.Is(err, ErrNoHit) {
		t.Fatalf("Wait = %v, want ErrNoHit", err)
	}
}

// Spray stays within its budget, sends each port at most once and only to
// the ip it was given.
func TestSprayBounded(t *testing.T) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rec := &countingConn{PacketConn: c, ports: map[int]int{}}
	tok, _ := NewToken()
	ip := netip.MustParseAddr("127.0.0.1")
	sent, err := Spray(context.Background(), rec, ip, tok, 300)
	if err != nil {
		t.Fatal(err)
	}
	if sent != 300 || rec.total != 300 {
		t.Fatalf("sent %d (counted %d), want 300", sent, rec.total)
	}
	for port, n := range rec.ports {
		if n != 1 || port < minPort {
			t.Fatalf("port %d probed %d times", port, n)
		}
	}
	if rec.otherIP {
		t.Fatal("a probe went to another address")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if sent, _ := Spray(ctx, rec, ip, tok, 0); sent != 1 {
		t.Fatalf("a cancelled spray sent %d probes, want 1", sent)
	}
}

type countingConn struct {
	net.PacketConn
	total   int
	ports   map[int]int
	otherIP bool
}

func (c *countingConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	u := addr.(*net.UDPAddr)
	c.total++
	c.ports[u.Port]++
	if !u.IP.Equal(net.IPv4(127, 0, 0, 1)) {
		c.otherIP = true
	}
	return len(b), nil // counted, not sent: no packets to random local ports
}
