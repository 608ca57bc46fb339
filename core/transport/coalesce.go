package transport

import (
	"context"
	"net"
	"sync"

	pool "github.com/libp2p/go-buffer-pool"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/sec"
)

// Write coalescing under the security layer.
//
// crypto/tls seals a Write into 16 KiB records and hands each record to the
// socket in its own write(2); Noise does the same with 64 KiB frames. A
// 64 KiB yamux frame therefore costs four syscalls, and on loopback each
// one also runs the receiver's network stack. coalescingSecurity wraps a
// security transport so that the records of one large Write are gathered in
// a buffer and reach the socket in one write(2) when that Write ends.
//
// Nothing is delayed: the buffer is flushed before Write returns, so
// latency, deadlines and error reporting stay those of the plain
// connection. Writes of at most one record pass straight through, so small
// messages pay no extra copy.

const (
	// coalesceMin is the smallest Write worth gathering: anything up to
	// one TLS record is a single write(2) anyway.
	coalesceMin = 16 << 10
	// coalesceMax bounds the buffer; a Write larger than this reaches the
	// socket in several writes of about this size.
	coalesceMax = 256 << 10
)

// coalescingSecurity wraps a libp2p security transport (TLS or Noise).
type coalescingSecurity struct {
	sec.SecureTransport
}

func (t coalescingSecurity) SecureInbound(ctx context.Context, insecure net.Conn, p peer.ID) (sec.SecureConn, error) {
	raw := &gatherConn{Conn: insecure}
	s, err := t.SecureTransport.SecureInbound(ctx, raw, p)
	return coalesced(s, raw, err)
}

func (t coalescingSecurity) SecureOutbound(ctx context.Context, insecure net.Conn, p peer.ID) (sec.SecureConn, error) {
	raw := &gatherConn{Conn: insecure}
	s, err := t.SecureTransport.SecureOutbound(ctx, raw, p)
	return coalesced(s, raw, err)
}

// coalesced wraps s, secured over raw.
func coalesced(s sec.SecureConn, raw *gatherConn, err error) (sec.SecureConn, error) {
	if err != nil {
		return nil, err
	}
	return &coalescedConn{SecureConn: s, raw: raw}, nil
}

// coalescedConn is the secure connection; a large Write is gathered on raw.
type coalescedConn struct {
	sec.SecureConn
	raw *gatherConn
}

func (c *coalescedConn) Write(p []byte) (int, error) {
	if len(p) <= coalesceMin {
		return c.SecureConn.Write(p)
	}
	c.raw.hold()
	n, err := c.SecureConn.Write(p)
	if ferr := c.raw.release(); ferr != nil && err == nil {
		// The records are not all on the wire; the connection is broken
		// (as after any failed write) and the caller must not assume
		// any prefix arrived.
		return 0, ferr
	}
	return n, err
}

// gatherConn is the insecure connection under the security layer. While
// held, its writes are appended to a buffer that release (or a full buffer)
// writes out in one call; otherwise writes go straight to the socket. All
// writes pass the same mutex, so bytes keep their order even when the
// security layer writes from another goroutine (an alert, a key update).
type gatherConn struct {
	net.Conn

	mu    sync.Mutex
	holds int
	buf   []byte // from the buffer pool while holds > 0 and data is gathered
}

func (c *gatherConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.holds == 0 {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		return c.Conn.Write(p)
	}
	if c.buf == nil {
		c.buf = pool.Get(coalesceMax)[:0]
	}
	if len(c.buf)+len(p) > coalesceMax {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) >= coalesceMax {
			return c.Conn.Write(p)
		}
	}
	c.buf = append(c.buf, p...)
	return len(p), nil
}

func (c *gatherConn) hold() {
	c.mu.Lock()
	c.holds++
	c.mu.Unlock()
}

// release ends one hold; the last one writes out what was gathered and
// returns the buffer to the pool.
func (c *gatherConn) release() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.holds--
	if c.holds > 0 {
		return nil
	}
	err := c.flushLocked()
	if c.buf != nil {
		pool.Put(c.buf[:cap(c.buf)])
		c.buf = nil
	}
	return err
}

func (c *gatherConn) flushLocked() error {
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	return err
}
