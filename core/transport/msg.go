package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Send delivers msg to p over /remora/msg/1 and returns once p's handler
// accepted it (ACK). A NACK returns a *RemoteError (errors.Is ErrRejected);
// a message over either side's limit returns ErrTooLarge. Any other error
// means the outcome is unknown: the message may have been handled (the layer
// above dedupes). Send connects first (see Connect) when no path is live.
// The stream is reused for later messages to p.
func (t *Transport) Send(ctx context.Context, p peer.ID, msg []byte) error {
	if err := t.send(ctx, p, msg); err != nil {
		return fmt.Errorf("transport: send to %s: %w", shortID(p), err)
	}
	return nil
}

func (t *Transport) send(ctx context.Context, p peer.ID, msg []byte) error {
	if t.closed.Load() {
		return ErrClosed
	}
	if len(msg) > t.maxMsg {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(msg), t.maxMsg)
	}
	if !t.admitted(p) {
		return ErrNotAllowed
	}
	if !t.PathTo(p).Live() {
		if _, err := t.Connect(ctx, p); err != nil {
			return err
		}
	}
	for attempt := 0; ; attempt++ {
		ms, reused, err := t.stream(ctx, p)
		if err != nil {
			return t.closedOr(err)
		}
		err = ms.exchange(ctx, msg)
		switch {
		case err == nil:
			t.pool.put(p, ms)
			return nil
		case errors.Is(err, ErrRejected):
			t.pool.put(p, ms) // a NACK leaves the stream healthy
			return err
		}
		ms.s.Reset()
		if errors.Is(err, ErrTooLarge) || ctx.Err() != nil || !reused || attempt > 0 {
			return t.closedOr(err)
		}
		// A pooled stream may have died while idle (remote timeout, path
		// change): retry once on a fresh one.
		t.log.Debug("retrying send on a fresh stream", "peer", p, "err", err)
	}
}

func (t *Transport) closedOr(err error) error {
	if t.closed.Load() {
		return fmt.Errorf("%w (%v)", ErrClosed, err)
	}
	return err
}

// stream returns an idle pooled stream to p or opens a new one.
func (t *Transport) stream(ctx context.Context, p peer.ID) (*msgStream, bool, error) {
	if ms := t.pool.get(p, time.Now()); ms != nil {
		return ms, true, nil
	}
	sctx := network.WithAllowLimitedConn(ctx, "remora message")
	s, err := t.h.NewStream(sctx, p, ProtocolID)
	if err != nil {
		return nil, false, fmt.Errorf("open stream: %w", err)
	}
	return &msgStream{s: s, r: bufio.NewReader(s), w: bufio.NewWriterSize(s, 64<<10)}, false, nil
}

type msgStream struct {
	s        network.Stream
	r        *bufio.Reader
	w        *bufio.Writer
	lastUsed time.Time
}

// exchange writes one message and waits for its response; ctx cancellation
// resets the stream.
func (ms *msgStream) exchange(ctx context.Context, msg []byte) error {
	stop := context.AfterFunc(ctx, func() { ms.s.Reset() })
	defer stop()
	if err := writeMsg(ms.w, msg); err != nil {
		// The receiver may have refused the length before we finished
		// writing: its verdict is what the caller needs.
		ms.s.SetReadDeadline(time.Now().Add(time.Second))
		if rerr := readResponse(ms.r); errors.Is(rerr, ErrTooLarge) {
			return rerr
		}
		return ctxErr(ctx, fmt.Errorf("write: %w", err))
	}
	if err := readResponse(ms.r); err != nil {
		return ctxErr(ctx, err)
	}
	return nil
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// handleStream serves one inbound /remora/msg/1 stream: request after request
// until EOF, idle timeout, error, or Close.
func (t *Transport) handleStream(s network.Stream) {
	from := s.Conn().RemotePeer()
	if !t.admitted(from) { // the gater already checked; belt and braces
		s.Reset()
		return
	}
	r := bufio.NewReader(s)
	w := bufio.NewWriterSize(s, 512)
	for {
		s.SetReadDeadline(time.Now().Add(IdleStreamTimeout))
		n, err := readMsgLen(r, t.maxMsg)
		if err != nil {
			if errors.Is(err, ErrTooLarge) {
				t.log.Warn("refused oversized message", "peer", from, "err", err)
				writeResponse(w, respTooLarge, "")
				s.Close()
				return
			}
			if errors.Is(err, io.EOF) {
				s.Close()
			} else {
				s.Reset()
			}
			return
		}
		// The body of a large message may take longer than the idle timeout.
		s.SetReadDeadline(time.Now().Add(IdleStreamTimeout + time.Duration(n/(64<<10))*time.Second))
		msg := make([]byte, n)
		if _, err := io.ReadFull(r, msg); err != nil {
			s.Reset()
			return
		}
		code, reason := respACK, ""
		if err := t.dispatch(from, msg); err != nil {
			code, reason = respNACK, err.Error()
		}
		s.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if err := writeResponse(w, code, reason); err != nil {
			s.Reset()
			return
		}
	}
}

func (t *Transport) dispatch(from peer.ID, msg []byte) (err error) {
	hp := t.handler.Load()
	if hp == nil {
		return errors.New("no handler")
	}
	defer func() {
		if r := recover(); r != nil {
			t.log.Error("message handler panicked", "peer", from, "panic", r)
			err = errors.New("handler failed")
		}
	}()
	return (*hp)(t.ctx, from, msg)
}

// streamPool keeps a few idle message streams per peer.
type streamPool struct {
	mu     sync.Mutex
	idle   map[peer.ID][]*msgStream
	closed bool
}

const (
	poolPerPeer = 4
	// poolMaxIdle is well under the receiver's IdleStreamTimeout so that a
	// pooled stream is almost never found closed.
	poolMaxIdle = 30 * time.Second
)

func (sp *streamPool) init() { sp.idle = map[peer.ID][]*msgStream{} }

func (sp *streamPool) get(p peer.ID, now time.Time) *msgStream {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	for {
		l := sp.idle[p]
		if len(l) == 0 {
			return nil
		}
		ms := l[len(l)-1]
		sp.idle[p] = l[:len(l)-1]
		if now.Sub(ms.lastUsed) < poolMaxIdle && !ms.s.Conn().IsClosed() {
			return ms
		}
		ms.s.Close()
	}
}

func (sp *streamPool) put(p peer.ID, ms *msgStream) {
	ms.lastUsed = time.Now()
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.closed || len(sp.idle[p]) >= poolPerPeer {
		ms.s.Close()
		return
	}
	sp.idle[p] = append(sp.idle[p], ms)
}

func (sp *streamPool) drop(p peer.ID) {
	sp.mu.Lock()
	l := sp.idle[p]
	delete(sp.idle, p)
	sp.mu.Unlock()
	for _, ms := range l {
		ms.s.Close()
	}
}

func (sp *streamPool) closeAll() {
	sp.mu.Lock()
	all := sp.idle
	sp.idle = map[peer.ID][]*msgStream{}
	sp.closed = true
	sp.mu.Unlock()
	for _, l := range all {
		for _, ms := range l {
			ms.s.Reset()
		}
	}
}

func shortID(p peer.ID) string {
	s := p.String()
	if len(s) > 12 {
		return s[len(s)-8:]
	}
	return s
}
