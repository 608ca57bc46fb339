package sdk

import (
	"context"
	"sync"
)

// Lifecycle makes a channel's Close behave as the contract says: Close
// cancels the calls in flight (their contexts end, so a blocked request, a
// long poll or a running Subscribe returns), waits until each has returned,
// then releases the channel's resources once; every call after Close fails
// at once with ErrClosed. The zero value is ready to use; embed it or keep
// it in a field.
//
//	func (c *channel) Publish(ctx context.Context, req sdk.PublishRequest) (sdk.PublishResponse, error) {
//		ctx, end, err := c.life.Begin(ctx)
//		if err != nil {
//			return sdk.PublishResponse{}, err
//		}
//		defer end()
//		... every request uses ctx ...
//	}
//
//	func (c *channel) Close() error { return c.life.Close(c.release) }
//
// A call interrupted by Close sees ctx.Err() == context.Canceled and
// context.Cause(ctx) == ErrClosed; it may return either.
type Lifecycle struct {
	mu      sync.Mutex
	closed  bool
	done    chan struct{}
	calls   sync.WaitGroup
	next    uint64
	cancels map[uint64]context.CancelCauseFunc

	closeErr error
	released chan struct{}
}

func (l *Lifecycle) initLocked() {
	if l.done == nil {
		l.done = make(chan struct{})
		l.released = make(chan struct{})
		l.cancels = map[uint64]context.CancelCauseFunc{}
	}
}

// Begin starts a call. The returned context ends when ctx does or when
// Close is called; end must be called when the call returns (defer it).
// After Close, Begin returns ErrClosed and nothing else.
func (l *Lifecycle) Begin(ctx context.Context) (context.Context, func(), error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.initLocked()
	if l.closed {
		return ctx, func() {}, ErrClosed
	}
	cctx, cancel := context.WithCancelCause(ctx)
	l.next++
	id := l.next
	l.cancels[id] = cancel
	l.calls.Add(1)
	var once sync.Once
	end := func() {
		once.Do(func() {
			l.mu.Lock()
			delete(l.cancels, id)
			l.mu.Unlock()
			cancel(nil)
			l.calls.Done()
		})
	}
	return cctx, end, nil
}

// Go runs f in a goroutine that Close cancels and waits for, for the
// channel's own background work (a poller, a websocket reader, a flusher).
// After Close it runs nothing and returns ErrClosed.
func (l *Lifecycle) Go(f func(ctx context.Context)) error {
	ctx, end, err := l.Begin(context.Background())
	if err != nil {
		return err
	}
	go func() {
		defer end()
		f(ctx)
	}()
	return nil
}

// Done is closed as soon as Close is called.
func (l *Lifecycle) Done() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.initLocked()
	return l.done
}

// Closed reports whether Close was called.
func (l *Lifecycle) Closed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// Close cancels every call in flight, waits until each has returned, then
// runs release (if not nil) and returns its error. It is safe to call more
// than once and concurrently: every call waits for the first to finish and
// returns the same error.
func (l *Lifecycle) Close(release func() error) error {
	l.mu.Lock()
	l.initLocked()
	first := !l.closed
	if first {
		l.closed = true
		close(l.done)
		for _, cancel := range l.cancels {
			cancel(ErrClosed)
		}
	}
	released := l.released
	l.mu.Unlock()
	if !first {
		<-released
		return l.closeErr
	}
	l.calls.Wait()
	if release != nil {
		l.closeErr = release()
	}
	close(released)
	return l.closeErr
}
