package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/remora-p2p/remora/sdk"
)

func TestLifecycle(t *testing.T) {
	var l sdk.Lifecycle
	started := make(chan struct{})
	returned := make(chan error, 1)
	go func() { // a call blocked on I/O, e.g. a long poll
		ctx, end, err := l.Begin(context.Background())
		if err != nil {
			returned <- err
			return
		}
		defer end()
		close(started)
		<-ctx.Done()
		returned <- context.Cause(ctx)
	}()
	<-started
	var bg atomic.Bool
	if err := l.Go(func(ctx context.Context) { <-ctx.Done(); bg.Store(true) }); err != nil {
		t.Fatal(err)
	}
	released := 0
	closed := make(chan error, 1)
	go func() { closed <- l.Close(func() error { released++; return errors.New("flush failed") }) }()
	select {
	case err := <-returned:
		if !errors.Is(err, sdk.ErrClosed) {
			t.Fatalf("the call's context ended with %v, want cause ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not cancel the call in flight")
	}
	if err := <-closed; err == nil || err.Error() != "flush failed" {
		t.Fatalf("Close = %v, want the release error", err)
	}
	if !bg.Load() {
		t.Fatal("Close returned before the background goroutine ended")
	}
	if err := l.Close(nil); err == nil || released != 1 {
		t.Fatalf("second Close = %v (released %d times), want the same error and one release", err, released)
	}
	if _, _, err := l.Begin(context.Background()); !errors.Is(err, sdk.ErrClosed) {
		t.Fatalf("Begin after Close = %v", err)
	}
	if err := l.Go(func(context.Context) {}); !errors.Is(err, sdk.ErrClosed) {
		t.Fatalf("Go after Close = %v", err)
	}
	select {
	case <-l.Done():
	default:
		t.Fatal("Done not closed")
	}
	if !l.Closed() {
		t.Fatal("Closed() false")
	}
}

// TestLifecycleCallerCancel: a call's context also ends with its caller's,
// and ending a call early does not disturb Close.
func TestLifecycleCallerCancel(t *testing.T) {
	var l sdk.Lifecycle
	ctx, cancel := context.WithCancel(context.Background())
	cctx, end, err := l.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	<-cctx.Done()
	end()
	end() // twice is harmless
	if err := l.Close(nil); err != nil {
		t.Fatal(err)
	}
}

// A channel whose Close cancels its calls in flight: a Subscribe blocked
// waiting for the service returns, and later calls fail with ErrClosed.
func ExampleLifecycle() {
	type channel struct{ life sdk.Lifecycle }
	c := &channel{}
	subscribe := func(ctx context.Context, waiting chan<- struct{}) error {
		ctx, end, err := c.life.Begin(ctx)
		if err != nil {
			return err
		}
		defer end()
		close(waiting)
		<-ctx.Done() // waiting for the service, as a long poll does
		return ctx.Err()
	}
	waiting, done := make(chan struct{}), make(chan error)
	go func() { done <- subscribe(context.Background(), waiting) }()
	<-waiting
	c.life.Close(func() error { fmt.Println("released"); return nil })
	fmt.Println("subscribe returned:", <-done)
	fmt.Println("after close:", subscribe(context.Background(), make(chan struct{})))
	// Output:
	// released
	// subscribe returned: context canceled
	// after close: channel closed
}
