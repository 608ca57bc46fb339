package discovery

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

func testPeer(t testing.TB) peer.ID {
	t.Helper()
	_, pub, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

type failing struct{ n int }

func (f *failing) Name() string { return "flaky" }
func (f *failing) Run(ctx context.Context, emit func(Found)) error {
	f.n++
	return fmt.Errorf("attempt %d failed", f.n)
}

func TestReport(t *testing.T) {
	a, b := testPeer(t), testPeer(t)
	cache := Static{Label: "cache", Peers: func() []Found { return []Found{{Peer: a}} }}
	flaky := &failing{}
	d := New(Options{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}, cache, flaky,
		notConfigured{}, Static{Label: "empty", Peers: func() []Found { return nil }})
	ctx, cancel := context.WithCancel(t.Context())
	found := make(chan Found, 10)
	done := make(chan struct{})
	go func() { d.Run(ctx, func(f Found) { found <- f }); close(done) }()
	if f := <-found; f.Peer != a || f.Source != "cache" {
		t.Fatalf("found %+v", f)
	}
	d.Report(Found{Peer: b, Source: "channel:git"})
	d.Report(Found{Peer: a, Source: "mdns"})
	time.Sleep(50 * time.Millisecond)
	cancel()
	<-done
	if d.FoundBy(a) != "cache" || d.FoundBy(b) != "channel:git" {
		t.Errorf("FoundBy: a=%q b=%q", d.FoundBy(a), d.FoundBy(b))
	}
	boxes := map[string]Status{}
	for _, s := range d.Boxes() {
		boxes[s.Name] = s
	}
	if s := boxes["flaky"]; s.LastError == "" || s.Reachable {
		t.Errorf("flaky box: %+v, want an error", s)
	}
	if s := boxes["web"]; s.Configured {
		t.Errorf("a box without settings: %+v, want not configured", s)
	}
	if s := boxes["cache"]; s.Found != 1 || !s.Configured {
		t.Errorf("cache box: %+v", s)
	}
	if s := boxes["channel:git"]; s.Found != 1 {
		t.Errorf("channel box: %+v", s)
	}
	if flaky.n < 2 {
		t.Errorf("flaky source ran %d times, want restarts", flaky.n)
	}
}

type notConfigured struct{}

func (notConfigured) Name() string { return "web" }
func (notConfigured) Run(context.Context, func(Found)) error {
	return ErrNotConfigured
}
