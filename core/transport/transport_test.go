package transport_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/remora-p2p/remora/core/transport"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(labRoleEnv) != "" { // a peer of TestNATLab, inside its namespace
		os.Exit(labHelperMain())
	}
	goleak.VerifyTestMain(m)
}

// members is a concurrency-safe member set for Options.Allow.
type members struct {
	mu  sync.Mutex
	ids map[peer.ID]bool
}

func newMembers() *members { return &members{ids: map[peer.ID]bool{}} }

func (m *members) add(ids ...peer.ID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, id := range ids {
		m.ids[id] = true
	}
}

func (m *members) allow(p peer.ID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ids[p]
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("REMORA_TRANSPORT_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return nil
}

func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newTransport starts a transport on loopback with the given member set.
func newTransport(t testing.TB, m *members, mod func(*transport.Options)) *transport.Transport {
	t.Helper()
	o := transport.Options{
		Identity:    newKey(t),
		ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"},
		Allow:       m.allow,
		Logger:      testLogger(t),
	}
	if mod != nil {
		mod(&o)
	}
	tr, err := transport.New(context.Background(), o)
	if err != nil {
		t.Fatalf("transport.New: %v", err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// introduce gives b's addresses to a, as a channel would.
func introduce(a, b *transport.Transport) {
	var mas []ma.Multiaddr
	for _, ad := range b.Addrs() {
		mas = append(mas, ad.Multiaddr)
	}
	a.AddAddrs(b.ID(), mas, peerstore.TempAddrTTL)
}

// pair returns two member transports that know each other's addresses.
func pair(t testing.TB, mod func(*transport.Options)) (a, b *transport.Transport, m *members) {
	m = newMembers()
	a = newTransport(t, m, mod)
	b = newTransport(t, m, mod)
	m.add(a.ID(), b.ID())
	introduce(a, b)
	introduce(b, a)
	return a, b, m
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestConnectAndSend(t *testing.T) {
	a, b, _ := pair(t, nil)
	got := make(chan []byte, 10)
	b.Handle(func(_ context.Context, from peer.ID, msg []byte) error {
		if from != a.ID() {
			return fmt.Errorf("from %s, want %s", from, a.ID())
		}
		got <- msg
		return nil
	})
	ctx := ctxT(t, 20*time.Second)
	path, err := a.Connect(ctx, b.ID())
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	if path != transport.PathLAN {
		t.Errorf("path = %s, want lan (loopback)", path)
	}
	for i := range 5 {
		msg := []byte(fmt.Sprintf("hello %d", i))
		if err := a.Send(ctx, b.ID(), msg); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
		// Send returned: the handler has run.
		select {
		case m := <-got:
			if !bytes.Equal(m, msg) {
				t.Fatalf("got %q, want %q", m, msg)
			}
		default:
			t.Fatalf("Send %d returned before the handler accepted the message", i)
		}
	}
	if p := b.PathTo(a.ID()); p != transport.PathLAN {
		t.Errorf("b.PathTo(a) = %s, want lan", p)
	}
}

func TestGaterRejectsNonMember(t *testing.T) {
	m := newMembers()
	a := newTransport(t, m, nil)
	b := newTransport(t, m, nil)
	stranger := newTransport(t, newMembers(), func(o *transport.Options) {
		o.Allow = func(peer.ID) bool { return true } // the stranger would talk to anyone
	})
	m.add(a.ID(), b.ID())
	b.Handle(func(context.Context, peer.ID, []byte) error { return nil })
	stranger.Handle(func(context.Context, peer.ID, []byte) error { return nil })
	introduce(a, stranger)
	introduce(stranger, b)
	ctx := ctxT(t, 20*time.Second)

	t.Run("outbound to non-member", func(t *testing.T) {
		_, err := a.Connect(ctx, stranger.ID())
		if !errors.Is(err, transport.ErrNotAllowed) {
			t.Fatalf("Connect to stranger: err = %v, want ErrNotAllowed", err)
		}
		if err := a.Send(ctx, stranger.ID(), []byte("x")); !errors.Is(err, transport.ErrNotAllowed) {
			t.Fatalf("Send to stranger: err = %v, want ErrNotAllowed", err)
		}
	})
	t.Run("inbound from non-member", func(t *testing.T) {
		_, err := stranger.Connect(ctx, b.ID())
		if err == nil {
			t.Fatal("stranger connected to a member")
		}
		if err := stranger.Send(ctx, b.ID(), []byte("x")); err == nil {
			t.Fatal("stranger's message was accepted")
		}
		if p := b.PathTo(stranger.ID()); p.Live() {
			t.Fatalf("b has a %s path to the stranger", p)
		}
		if n := len(b.Host().Network().ConnsToPeer(stranger.ID())); n != 0 {
			t.Fatalf("b keeps %d connections to the stranger", n)
		}
	})
	t.Run("members still connect", func(t *testing.T) {
		introduce(a, b)
		if err := a.Send(ctx, b.ID(), []byte("hi")); err != nil {
			t.Fatalf("member Send: %v", err)
		}
	})
}

func TestHandlerErrorIsNACK(t *testing.T) {
	a, b, _ := pair(t, nil)
	b.Handle(func(_ context.Context, _ peer.ID, msg []byte) error {
		if string(msg) == "bad" {
			return errors.New("envelope: bad signature")
		}
		return nil
	})
	ctx := ctxT(t, 20*time.Second)
	err := a.Send(ctx, b.ID(), []byte("bad"))
	var re *transport.RemoteError
	if !errors.Is(err, transport.ErrRejected) || !errors.As(err, &re) {
		t.Fatalf("Send(bad): err = %v, want a *RemoteError matching ErrRejected", err)
	}
	if re.Reason != "envelope: bad signature" {
		t.Errorf("reason = %q, want the handler's error text", re.Reason)
	}
	// The stream survives a NACK: the next message is ACKed.
	if err := a.Send(ctx, b.ID(), []byte("good")); err != nil {
		t.Fatalf("Send(good) after a NACK: %v", err)
	}
	// No handler at all is a NACK too, not a hang.
	b.Handle(nil)
	if err := a.Send(ctx, b.ID(), []byte("good")); !errors.Is(err, transport.ErrRejected) {
		t.Fatalf("Send with no remote handler: err = %v, want ErrRejected", err)
	}
}

func TestHandlerPanicIsNACK(t *testing.T) {
	a, b, _ := pair(t, nil)
	b.Handle(func(context.Context, peer.ID, []byte) error { panic("boom") })
	err := a.Send(ctxT(t, 20*time.Second), b.ID(), []byte("x"))
	if !errors.Is(err, transport.ErrRejected) {
		t.Fatalf("err = %v, want ErrRejected", err)
	}
}

func TestMessageSizeLimit(t *testing.T) {
	const limit = 64 << 10
	m := newMembers()
	a := newTransport(t, m, func(o *transport.Options) { o.MaxMessageSize = 4 * limit })
	b := newTransport(t, m, func(o *transport.Options) { o.MaxMessageSize = limit })
	m.add(a.ID(), b.ID())
	introduce(a, b)
	introduce(b, a)
	var got [][]byte
	var mu sync.Mutex
	b.Handle(func(_ context.Context, _ peer.ID, msg []byte) error {
		mu.Lock()
		got = append(got, msg)
		mu.Unlock()
		return nil
	})
	ctx := ctxT(t, 30*time.Second)
	tests := []struct {
		name    string
		from    *transport.Transport
		to      *transport.Transport
		size    int
		wantErr error
	}{
		{"at the limit", a, b, limit, nil},
		{"empty", a, b, 0, nil},
		{"over the receiver's limit", a, b, limit + 1, transport.ErrTooLarge},
		{"over the sender's limit", b, a, limit + 1, transport.ErrTooLarge},
		{"fine again after a refusal", a, b, 1000, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := bytes.Repeat([]byte{0xA5}, tt.size)
			err := tt.from.Send(ctx, tt.to.ID(), msg)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Send(%d bytes): err = %v, want %v", tt.size, err, tt.wantErr)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 || len(got[0]) != limit || len(got[1]) != 0 || len(got[2]) != 1000 {
		sizes := []int{}
		for _, g := range got {
			sizes = append(sizes, len(g))
		}
		t.Fatalf("handler saw sizes %v, want [%d 0 1000]", sizes, limit)
	}
}

func TestCloseWhileSending(t *testing.T) {
	a, b, _ := pair(t, nil)
	entered := make(chan struct{}, 1)
	b.Handle(func(ctx context.Context, _ peer.ID, _ []byte) error {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-ctx.Done() // hold the ack until b closes
		return ctx.Err()
	})
	ctx := ctxT(t, 30*time.Second)
	if _, err := a.Connect(ctx, b.ID()); err != nil {
		t.Fatal(err)
	}
	t.Run("receiver closes", func(t *testing.T) {
		errc := make(chan error, 1)
		go func() { errc <- a.Send(ctx, b.ID(), bytes.Repeat([]byte("x"), 1<<20)) }()
		<-entered
		b.Close()
		select {
		case err := <-errc:
			if err == nil {
				t.Fatal("Send returned nil although the receiver closed before acking")
			}
		case <-time.After(15 * time.Second):
			t.Fatal("Send did not return after the receiver closed")
		}
	})
	t.Run("sender closes", func(t *testing.T) {
		c, d, _ := pair(t, nil)
		d.Handle(func(ctx context.Context, _ peer.ID, _ []byte) error { <-ctx.Done(); return nil })
		errc := make(chan error, 8)
		for range 8 {
			go func() { errc <- c.Send(ctx, d.ID(), []byte("x")) }()
		}
		time.Sleep(300 * time.Millisecond)
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		for range 8 {
			select {
			case err := <-errc:
				if !errors.Is(err, transport.ErrClosed) {
					t.Errorf("Send during Close: err = %v, want ErrClosed", err)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("Send did not return after Close")
			}
		}
		if err := c.Send(ctx, d.ID(), []byte("x")); !errors.Is(err, transport.ErrClosed) {
			t.Errorf("Send after Close: err = %v, want ErrClosed", err)
		}
		if err := c.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}

func TestSendCancelled(t *testing.T) {
	a, b, _ := pair(t, nil)
	release := make(chan struct{})
	b.Handle(func(ctx context.Context, _ peer.ID, _ []byte) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	})
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := a.Send(ctx, b.ID(), []byte("slow"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Send took %v after its deadline", d)
	}
}

func TestConcurrentSends(t *testing.T) {
	a, b, _ := pair(t, nil)
	var mu sync.Mutex
	seen := map[string]int{}
	b.Handle(func(_ context.Context, _ peer.ID, msg []byte) error {
		mu.Lock()
		seen[string(msg)]++
		mu.Unlock()
		return nil
	})
	ctx := ctxT(t, 60*time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for w := range 8 {
		wg.Go(func() {
			for i := range 25 {
				if err := a.Send(ctx, b.ID(), fmt.Appendf(nil, "%d-%d", w, i)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 200 {
		t.Fatalf("handler saw %d distinct messages, want 200", len(seen))
	}
}

func TestEvents(t *testing.T) {
	a, b, _ := pair(t, nil)
	b.Handle(func(context.Context, peer.ID, []byte) error { return nil })
	ctx := ctxT(t, 20*time.Second)
	if _, err := a.Connect(ctx, b.ID()); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, a, transport.EventConnected, b.ID(), transport.PathLAN)
	b.Close()
	waitEvent(t, a, transport.EventDisconnected, b.ID(), transport.PathNone)
	if p := a.PathTo(b.ID()); p != transport.PathNone {
		t.Fatalf("PathTo after the peer closed = %s, want none", p)
	}
	a.Close()
	for range a.Events() { // drains, then ends: Close closed the channel
	}
}

func waitEvent(t *testing.T, tr *transport.Transport, kind transport.EventKind, p peer.ID, path transport.Path) transport.Event {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case e := <-tr.Events():
			if e.Kind == kind && e.Peer == p {
				if e.Path != path {
					t.Fatalf("event %s for %s: path %s, want %s", kind, p, e.Path, path)
				}
				return e
			}
		case <-timeout:
			t.Fatalf("no %s event for %s", kind, p)
		}
	}
}

func TestAddrKinds(t *testing.T) {
	m := newMembers()
	tr := newTransport(t, m, nil)
	addrs := tr.Addrs()
	if len(addrs) < 2 {
		t.Fatalf("Addrs = %v, want a TCP and a QUIC address", addrs)
	}
	for _, a := range addrs {
		if a.Kind != transport.AddrLAN {
			t.Errorf("%s: kind %s, want lan (loopback must never be published)", a.Multiaddr, a.Kind)
		}
	}
}

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name string
		o    transport.Options
	}{
		{"no identity", transport.Options{Allow: func(peer.ID) bool { return true }}},
		{"short ed25519 key", transport.Options{Identity: ed25519.PrivateKey{1, 2, 3}, Allow: func(peer.ID) bool { return true }}},
		{"wrong key type", transport.Options{Identity: "secret", Allow: func(peer.ID) bool { return true }}},
		{"no allow", transport.Options{Identity: newKey(t)}},
		{"bad listen addr", transport.Options{Identity: newKey(t), Allow: func(peer.ID) bool { return true }, ListenAddrs: []string{"127.0.0.1:4001"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := transport.New(context.Background(), tt.o)
			if err == nil {
				tr.Close()
				t.Fatal("New accepted invalid options")
			}
		})
	}
}

func TestSimultaneousConnect(t *testing.T) {
	punching := func(o *transport.Options) {
		o.EnableHolePunching = true
		o.ListenAddrs = []string{"/ip4/127.0.0.1/udp/0/quic-v1"}
	}
	a, b, _ := pair(t, punching)
	ctx := ctxT(t, 20*time.Second)
	type result struct {
		path transport.Path
		err  error
	}
	res := make(chan result, 2)
	for _, x := range [][2]*transport.Transport{{a, b}, {b, a}} {
		go func() {
			p, err := x[0].SimultaneousConnect(ctx, x[1].ID())
			res <- result{p, err}
		}()
	}
	for range 2 {
		r := <-res
		if r.err != nil {
			t.Fatalf("SimultaneousConnect: %v", r.err)
		}
		if r.path != transport.PathLAN {
			t.Errorf("path %s, want lan (loopback)", r.path)
		}
	}
	c := newTransport(t, newMembers(), nil) // hole punching off
	if _, err := c.SimultaneousConnect(ctx, a.ID()); err == nil {
		t.Error("SimultaneousConnect without EnableHolePunching succeeded")
	}
}
