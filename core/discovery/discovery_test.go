package discovery

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"aead.dev/minisign"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

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

func testKeys(t testing.TB) (minisign.PublicKey, minisign.PrivateKey) {
	t.Helper()
	pub, priv, err := minisign.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func listText(seq int, expires time.Time, relays ...string) []byte {
	s := fmt.Sprintf("# test list\nremora-relays v1 seq=%d expires=%s\n", seq, expires.Format(time.RFC3339))
	for _, r := range relays {
		s += r + "\n"
	}
	return []byte(s)
}

func TestParseRelayList(t *testing.T) {
	pub, priv := testKeys(t)
	otherPub, otherPriv := testKeys(t)
	id := testPeer(t)
	relay := "/ip4/198.51.100.1/tcp/4001/p2p/" + id.String()
	good := listText(5, now.Add(time.Hour), relay)
	tests := []struct {
		name   string
		data   []byte
		sig    []byte
		keys   []minisign.PublicKey
		minSeq uint64
		want   error
		relays int
	}{
		{"valid", good, minisign.Sign(priv, good), []minisign.PublicKey{pub}, 0, nil, 1},
		{"second trusted key", good, minisign.Sign(otherPriv, good), []minisign.PublicKey{pub, otherPub}, 0, nil, 1},
		{"untrusted signer", good, minisign.Sign(otherPriv, good), []minisign.PublicKey{pub}, 0, ErrBadSignature, 0},
		{"tampered", append(good, '#'), minisign.Sign(priv, good), []minisign.PublicKey{pub}, 0, ErrBadSignature, 0},
		{"garbage signature", good, []byte("not a signature"), []minisign.PublicKey{pub}, 0, ErrBadSignature, 0},
		{"expired", listText(5, now.Add(-time.Second)), nil, []minisign.PublicKey{pub}, 0, ErrListExpired, 0},
		{"rollback", good, minisign.Sign(priv, good), []minisign.PublicKey{pub}, 6, ErrRollback, 0},
		{"same seq again", good, minisign.Sign(priv, good), []minisign.PublicKey{pub}, 5, nil, 1},
		{"no header", []byte("/ip4/1.2.3.4/tcp/1\n"), nil, []minisign.PublicKey{pub}, 0, ErrListFormat, 0},
		{"address without peer", listText(1, now.Add(time.Hour), "/ip4/198.51.100.1/tcp/4001"), nil, []minisign.PublicKey{pub}, 0, ErrListFormat, 0},
		{"bad address", listText(1, now.Add(time.Hour), "/ip4/999.1.1.1/tcp/1"), nil, []minisign.PublicKey{pub}, 0, ErrListFormat, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sig := tt.sig
			if sig == nil {
				sig = minisign.Sign(priv, tt.data)
			}
			l, err := ParseRelayList(tt.data, sig, tt.keys, now, tt.minSeq)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
			if err == nil && (len(l.Relays) != tt.relays || l.Relays[0].ID != id) {
				t.Fatalf("relays %+v, want %d with %s", l.Relays, tt.relays, id)
			}
		})
	}
}

// The list that ships in the binary must verify against the shipped key.
func TestEmbeddedListVerifies(t *testing.T) {
	keys, err := TrustedKeys()
	if err != nil {
		t.Fatal(err)
	}
	l, err := ParseRelayList(embeddedList, embeddedSig, keys, now, 0)
	if err != nil {
		t.Fatalf("embedded relay list: %v", err)
	}
	if days := time.Until(l.Expires).Hours() / 24; days < 30 {
		t.Logf("warning: the embedded relay list expires in %.0f days: re-sign it (docs/discovery.md)", days)
	}
}

func TestWebFileAndRollbackAcrossSources(t *testing.T) {
	pub, priv := testKeys(t)
	id := testPeer(t)
	var mu sync.Mutex
	data := listText(7, now.Add(time.Hour), "/ip4/198.51.100.2/udp/4001/quic-v1/p2p/"+id.String())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch r.URL.Path {
		case "/relays.txt":
			w.Write(data)
		case "/relays.txt.minisig":
			w.Write(minisign.Sign(priv, data))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	seq := &memSeq{}
	boot := Bootstrap{Keys: []minisign.PublicKey{pub}, Seq: seq, Now: func() time.Time { return now }}
	var got []Found
	w := WebFile{URL: srv.URL + "/relays.txt", Boot: boot}
	if err := w.Run(t.Context(), func(f Found) { got = append(got, f) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Peer != id || !got[0].Relay {
		t.Fatalf("found %+v", got)
	}
	if seq.RelayListSeq() != 7 {
		t.Fatalf("seq %d saved, want 7", seq.RelayListSeq())
	}
	// A replayed older list is refused now.
	mu.Lock()
	data = listText(6, now.Add(time.Hour))
	mu.Unlock()
	if err := w.Run(t.Context(), func(Found) {}); !errors.Is(err, ErrRollback) {
		t.Fatalf("older list: %v, want ErrRollback", err)
	}
	if err := (WebFile{URL: srv.URL + "/missing", Boot: boot}).Run(t.Context(), func(Found) {}); err == nil {
		t.Fatal("404 must be an error")
	}
	if err := (WebFile{}).Run(t.Context(), func(Found) {}); !errors.Is(err, ErrNotConfigured) {
		t.Fatalf("no URL: %v, want ErrNotConfigured", err)
	}
}

type txtResolver map[string][]string

func (r txtResolver) LookupTXT(_ context.Context, name string) ([]string, error) {
	if v, ok := r[name]; ok {
		return v, nil
	}
	return nil, fmt.Errorf("lookup %s: no such host", name)
}

func TestDNSTXT(t *testing.T) {
	id := testPeer(t)
	res := txtResolver{"circle.example.test": {
		"v=spf1 -all",
		"remora-relay=/ip4/198.51.100.3/tcp/4001/p2p/" + id.String(),
		"remora-relay=garbage",
	}}
	var got []Found
	err := DNSTXT{Domain: "circle.example.test", Resolver: res}.Run(t.Context(), func(f Found) { got = append(got, f) })
	if err != nil || len(got) != 1 || got[0].Peer != id {
		t.Fatalf("found %+v, err %v", got, err)
	}
	if err := (DNSTXT{Domain: "missing.example.test", Resolver: res}).Run(t.Context(), func(Found) {}); err == nil {
		t.Fatal("a failed lookup must be an error")
	}
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
		WebFile{}, Static{Label: "empty", Peers: func() []Found { return nil }})
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
		t.Errorf("web box without URL: %+v, want not configured", s)
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

func FuzzParseRelayList(f *testing.F) {
	f.Add(embeddedList)
	f.Add(listText(1, now, "/ip4/198.51.100.1/tcp/1/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"))
	f.Add([]byte("remora-relays v1 seq=x expires=y"))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := parseRelayList(b)
		if err == nil && l.Expires.IsZero() {
			t.Fatal("parsed a list without expiry")
		}
	})
}
