package faultproxy_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/remora-p2p/remora/sdk/channeltest/faultproxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echo starts a line echo server: the service behind the proxy.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var conns []net.Conn
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
			go io.Copy(c, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

func newProxy(t *testing.T) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dial(t *testing.T, p *faultproxy.Proxy) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		return nil, nil // a reset may beat connect(2) on loopback; roundTrip reports it
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// roundTrip writes a line and reads it back within the deadline.
func roundTrip(c net.Conn, r *bufio.Reader, line string, within time.Duration) error {
	if c == nil {
		return errors.New("connection reset while connecting")
	}
	c.SetDeadline(time.Now().Add(within))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return err
	}
	got, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if got != line+"\n" {
		return errors.New("echo garbled: " + got)
	}
	return nil
}

func TestUpDownUp(t *testing.T) {
	p := newProxy(t)
	c, r := dial(t, p)
	if err := roundTrip(c, r, "hello", 10*time.Second); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	p.Down()
	if err := roundTrip(c, r, "again", 10*time.Second); err == nil || os.IsTimeout(err) {
		t.Fatalf("an open connection after Down: got %v, want it cut", err)
	}
	c2, r2 := dial(t, p) // accepted, then reset
	if err := roundTrip(c2, r2, "new", 10*time.Second); err == nil || os.IsTimeout(err) {
		t.Fatalf("a new connection while down: got %v, want it reset", err)
	}
	p.Up()
	c3, r3 := dial(t, p)
	if err := roundTrip(c3, r3, "back", 10*time.Second); err != nil {
		t.Fatalf("after Up: %v", err)
	}
	st := p.Stats()
	if st.Refused < 1 || st.Accepted < 2 {
		t.Fatalf("stats %+v: want a refused connection and two accepted", st)
	}
	if p.Mode() != "up" {
		t.Fatalf("mode %s", p.Mode())
	}
}

func TestStallHoldsThenResumes(t *testing.T) {
	p := newProxy(t)
	c, r := dial(t, p)
	if err := roundTrip(c, r, "warm", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	before := p.Stats().ToTarget
	p.Stall()
	err := roundTrip(c, r, "held", 300*time.Millisecond)
	if !os.IsTimeout(err) {
		t.Fatalf("while stalled: got %v, want a timeout", err)
	}
	if got := p.Stats().ToTarget; got != before {
		t.Fatalf("%d bytes reached the target while stalled", got-before)
	}
	if h := p.Stats().Held; h != 5 {
		t.Fatalf("%d bytes held while stalled, want the 5 written", h)
	}
	p.Up()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := r.ReadString('\n')
	if err != nil || got != "held\n" {
		t.Fatalf("after Up the held bytes should arrive: %q %v", got, err)
	}
	if h := p.Stats().Held; h != 0 {
		t.Fatalf("%d bytes still held after Up", h)
	}
}

func TestTrickle(t *testing.T) {
	p := newProxy(t)
	c, r := dial(t, p)
	const every = 5 * time.Millisecond
	p.Trickle(2, every)
	line := strings.Repeat("x", 19) // 20 bytes with the newline: 10 chunks each way
	start := time.Now()
	if err := roundTrip(c, r, line, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	// A lower bound only: a loaded machine is slower, never faster. The
	// directions overlap, so one direction's pauses bound it.
	if d := time.Since(start); d < 9*every {
		t.Fatalf("20 bytes at 2 per %v each way took %v", every, d)
	}
}

func TestCutAfter(t *testing.T) {
	p := newProxy(t)
	c, r := dial(t, p)
	if err := roundTrip(c, r, "warm", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	before := p.Stats().ToTarget
	p.CutAfter(4)
	err := roundTrip(c, r, "abcdefgh", 10*time.Second)
	if err == nil || os.IsTimeout(err) {
		t.Fatalf("a write past the budget: got %v, want the connection cut", err)
	}
	if got := p.Stats().ToTarget - before; got != 4 {
		t.Fatalf("%d bytes reached the target, want exactly the budget of 4", got)
	}
	if p.Mode() != "down" {
		t.Fatalf("after the cut the proxy is %s, want down", p.Mode())
	}
	p.Up()
	c2, r2 := dial(t, p)
	if err := roundTrip(c2, r2, "whole", 10*time.Second); err != nil {
		t.Fatalf("after Up: %v", err)
	}
}

func TestTargetDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there
	p, err := faultproxy.New(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, r := dial(t, p)
	if err := roundTrip(c, r, "x", 10*time.Second); err == nil || os.IsTimeout(err) {
		t.Fatalf("target refusing: got %v, want the client connection closed", err)
	}
}

func TestBadTarget(t *testing.T) {
	if _, err := faultproxy.New("no-port"); err == nil {
		t.Fatal("a target without a port was accepted")
	}
}

// TestServerCloseDeliversAll: a server that sends a large answer and
// closes (git daemon after a pack, an HTTP/1.0 server) gets every byte to
// the client through the proxy, however slowly the client reads. A proxy
// that reset both ends on the first EOF discarded what it still held for
// the client ("connection reset" part way through a fetch).
func TestServerCloseDeliversAll(t *testing.T) {
	const size = 128 << 10
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sent := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			sent <- err
			return
		}
		_, err = c.Write(make([]byte, size))
		c.Close()
		sent <- err
	}()
	p, err := faultproxy.New(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4 << 10)
	c.SetDeadline(time.Now().Add(time.Minute))
	// The client reads nothing until the proxy has the whole answer and
	// the server closed: most of it waits in the proxy's socket.
	if err := <-sent; err != nil {
		t.Fatalf("server: %v", err)
	}
	deadline := time.Now().Add(time.Minute)
	for st := p.Stats(); st.ToClient < size; st = p.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("the proxy did not take the whole answer: %+v", st)
		}
		time.Sleep(time.Millisecond)
	}
	c.(*net.TCPConn).SetReadBuffer(1 << 20)
	got, err := io.Copy(io.Discard, c)
	if err != nil || got != size {
		t.Fatalf("read %d of %d bytes: %v", got, size, err)
	}
}
