package transport_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
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
	goleak.VerifyTestMain(m,
		// libp2p package-level workers that outlive every host.
		goleak.IgnoreAnyFunction("github.com/libp2p/go-libp2p/p2p/transport/quicreuse.(*reuse).gc"),
		goleak.IgnoreTopFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"),
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreTopFunction("github.com/libp2p/go-libp2p/p2p/net/swarm.(*Swarm).dialWorkerLoop"),
	)
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
