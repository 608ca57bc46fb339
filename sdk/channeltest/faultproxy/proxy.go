// Package faultproxy is a TCP proxy that injects the failures real services
// have, so that an adapter's tests can put any TCP or HTTP service behind it
// and watch the adapter cope: the service going away and coming back (open
// connections cut, new ones reset), a connection cut part way through a
// request, a server that stalls with connections open, and one that
// trickles bytes.
//
// A harness starts one proxy per service address, configures the channel
// with the proxy's address instead of the service's, and hands the proxy to
// the conformance kit (channeltest.Proxied), which drives the faults. It
// forwards bytes as they are, so TLS (STARTTLS or implicit) passes through
// end to end; only the port differs from the service's.
//
// Faults apply to every connection, open or new, from the moment they are
// set until the next change; Up restores plain forwarding.
package faultproxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// mode is what the proxy does with bytes and connections.
type mode int

const (
	modeUp      mode = iota // forward
	modeDown                // cut every connection, reset new ones
	modeStall               // accept and hold connections, forward nothing
	modeTrickle             // forward at most trickleN bytes per trickleEvery
)

func (m mode) String() string {
	return [...]string{"up", "down", "stall", "trickle"}[m]
}

// Stats counts what went through the proxy since it started.
type Stats struct {
	// Accepted is the number of connections accepted, Refused the number
	// reset at once because the proxy was down.
	Accepted, Refused int64
	// Open is the number of connections open now.
	Open int64
	// ToTarget and ToClient are bytes let through in each direction
	// (counted as they are handed to the other side).
	ToTarget, ToClient int64
	// Held is bytes read from one side and not yet passed on: a request
	// in flight while the proxy stalls or trickles.
	Held int64
}

// Proxy forwards TCP connections from a local address to a target and
// injects faults. Its methods are safe for concurrent use.
type Proxy struct {
	target string
	ln     net.Listener

	mu           sync.Mutex
	mode         mode
	trickleN     int
	trickleEvery time.Duration
	budget       int64         // bytes toward the target until a cut; < 0: no cut armed
	changed      chan struct{} // closed and replaced on every change
	conns        map[*pair]struct{}
	closed       bool

	wg                         sync.WaitGroup
	accepted, refused          atomic.Int64
	toTarget, toClient, opened atomic.Int64
	held                       atomic.Int64
}

// New starts a proxy on a free port of 127.0.0.1 that forwards to target
// (host:port). Close it when done.
func New(target string) (*Proxy, error) {
	if _, _, err := net.SplitHostPort(target); err != nil {
		return nil, fmt.Errorf("faultproxy: target %q: %w", target, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	p := &Proxy{target: target, ln: ln, budget: -1, changed: make(chan struct{}), conns: map[*pair]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's address (127.0.0.1:port): configure the channel with
// it in place of the target's.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Port is the proxy's port.
func (p *Proxy) Port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// Target is the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// Mode names the fault in force: "up", "down", "stall" or "trickle".
func (p *Proxy) Mode() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode.String()
}

// Up forwards normally again. Connections cut while down stay cut; stalled
// and trickled ones resume at full speed with nothing lost.
func (p *Proxy) Up() { p.set(modeUp, 0, 0) }

// Down makes the service vanish as a crashed server or a broken network
// does: every open connection is cut (reset), and new ones are accepted and
// reset at once, until Up.
func (p *Proxy) Down() { p.set(modeDown, 0, 0) }

// Stall holds every connection open, old and new, and forwards nothing in
// either direction until the next change: a server that hangs, or a
// network that drops packets silently.
func (p *Proxy) Stall() { p.set(modeStall, 0, 0) }

// Trickle forwards at most n bytes per interval in each direction of each
// connection: a server (or link) that answers a byte at a time.
func (p *Proxy) Trickle(n int, every time.Duration) {
	if n < 1 {
		n = 1
	}
	p.set(modeTrickle, n, every)
}

// CutAfter lets n more bytes through toward the target (over all
// connections), then goes Down: a connection lost part way through a
// request or a batch. Up disarms it.
func (p *Proxy) CutAfter(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n <= 0 {
		p.downLocked()
		return
	}
	p.budget = n
	p.notifyLocked()
}

func (p *Proxy) set(m mode, n int, every time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode, p.trickleN, p.trickleEvery = m, n, every
	p.budget = -1
	if m == modeDown {
		p.downLocked()
	}
	p.notifyLocked()
}

func (p *Proxy) downLocked() {
	p.mode = modeDown
	p.budget = -1
	for c := range p.conns {
		c.cut()
	}
	p.notifyLocked()
}

func (p *Proxy) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// Stats returns the proxy's counters.
func (p *Proxy) Stats() Stats {
	return Stats{
		Accepted: p.accepted.Load(), Refused: p.refused.Load(), Open: p.opened.Load(),
		ToTarget: p.toTarget.Load(), ToClient: p.toClient.Load(), Held: p.held.Load(),
	}
}

// Close stops the proxy and cuts every connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	for c := range p.conns {
		c.cut()
	}
	p.notifyLocked()
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		if p.closed || p.mode == modeDown {
			p.mu.Unlock()
			p.refused.Add(1)
			reset(c)
			continue
		}
		p.accepted.Add(1)
		pr := &pair{client: c}
		p.conns[pr] = struct{}{}
		p.opened.Add(1)
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(pr)
	}
}

// pair is one client connection and its connection to the target.
type pair struct {
	mu       sync.Mutex
	client   net.Conn
	upstream net.Conn
	isCut    bool
}

// cut resets both ends; a pair cut before it dialed never dials.
func (c *pair) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.isCut = true
	reset(c.client)
	if c.upstream != nil {
		reset(c.upstream)
	}
}

// reset closes c with an RST rather than a FIN, as a dead peer does.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

func (p *Proxy) serve(pr *pair) {
	defer p.wg.Done()
	clean := false
	defer func() {
		if clean {
			pr.close()
		} else {
			pr.cut()
		}
		p.mu.Lock()
		delete(p.conns, pr)
		p.mu.Unlock()
		p.opened.Add(-1)
	}()
	up, err := net.DialTimeout("tcp", p.target, 10*time.Second)
	if err != nil {
		return // the client sees a reset, as if the service refused it
	}
	pr.mu.Lock()
	if pr.isCut {
		pr.mu.Unlock()
		reset(up)
		return
	}
	pr.upstream = up
	pr.mu.Unlock()
	done := make(chan bool, 2)
	go func() { done <- p.pump(up, pr.client, true) }()
	go func() { done <- p.pump(pr.client, up, false) }()
	// A side that closed its end (EOF, passed on as a half-close) leaves
	// the other direction running, as TCP does: a server's last bytes
	// must reach the client, and a reset would discard them. A direction
	// that failed ends both.
	if clean = <-done; !clean {
		pr.cut()
	}
	clean = <-done && clean
}

// close closes both ends gracefully, after both directions ended cleanly.
func (c *pair) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.client.Close()
	if c.upstream != nil {
		_ = c.upstream.Close()
	}
}

// pump copies src to dst under the proxy's faults until either fails; it
// reports whether src ended cleanly (EOF), passed on to dst as a
// half-close.
func (p *Proxy) pump(dst, src net.Conn, toTarget bool) bool {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		data := buf[:n]
		p.held.Add(int64(n))
		for len(data) > 0 {
			chunk, last, ok := p.admit(data, toTarget)
			if !ok {
				p.held.Add(-int64(len(data)))
				return false
			}
			p.held.Add(-int64(len(chunk)))
			if toTarget {
				p.toTarget.Add(int64(len(chunk)))
			} else {
				p.toClient.Add(int64(len(chunk)))
			}
			if _, werr := dst.Write(chunk); werr != nil {
				p.held.Add(-int64(len(data) - len(chunk)))
				return false
			}
			if last {
				p.held.Add(-int64(len(data) - len(chunk)))
				p.cutNow()
				return false
			}
			data = data[len(chunk):]
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return false
			}
			if cw, ok := dst.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
			return true
		}
	}
}

// admit waits until the faults let some of data through and returns that
// part. last says the chunk uses up an armed cut's budget: the proxy goes
// down once it is written. ok is false when the connection is to be dropped.
func (p *Proxy) admit(data []byte, toTarget bool) (chunk []byte, last, ok bool) {
	for {
		p.mu.Lock()
		m, n, every, changed := p.mode, p.trickleN, p.trickleEvery, p.changed
		if p.closed || m == modeDown {
			p.mu.Unlock()
			return nil, false, false
		}
		if m == modeStall {
			p.mu.Unlock()
			<-changed
			continue
		}
		chunk = data
		if m == modeTrickle && len(chunk) > n {
			chunk = chunk[:n]
		}
		if toTarget && p.budget >= 0 {
			if int64(len(chunk)) >= p.budget {
				chunk, last = chunk[:p.budget], true
				p.budget = -1
				p.mode = modeDown // no other connection gets more through
			} else {
				p.budget -= int64(len(chunk))
			}
		}
		p.mu.Unlock()
		if m == modeTrickle && !last {
			t := time.NewTimer(every)
			select {
			case <-t.C:
			case <-changed:
				t.Stop()
			}
		}
		return chunk, last, true
	}
}

// cutNow cuts every connection after a cut's last bytes were handed over.
func (p *Proxy) cutNow() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mode == modeDown && !p.closed {
		p.downLocked()
	}
}
