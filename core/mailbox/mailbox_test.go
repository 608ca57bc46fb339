package mailbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/remora-p2p/remora/testenv"
)

// memBackend is an in-memory Backend for the package's own tests; the node
// tests run the real bbolt one.
type memBackend struct {
	mu sync.Mutex
	m  map[string][]byte
}

func newMem() *memBackend { return &memBackend{m: map[string][]byte{}} }

func (b *memBackend) Load(_ context.Context, fn func(k, v []byte) error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k, v := range b.m {
		if err := fn([]byte(k), bytes.Clone(v)); err != nil {
			return err
		}
	}
	return nil
}

func (b *memBackend) Get(k []byte) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	v, ok := b.m[string(k)]
	if !ok {
		return nil, errors.New("not found")
	}
	return bytes.Clone(v), nil
}

func (b *memBackend) Put(k, v []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.m[string(k)] = bytes.Clone(v)
	return nil
}

func (b *memBackend) Delete(keys ...[]byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, k := range keys {
		delete(b.m, string(k))
	}
	return nil
}

type clock struct{ t atomic.Int64 }

func (c *clock) now() time.Time      { return time.Unix(0, c.t.Load()) }
func (c *clock) add(d time.Duration) { c.t.Add(int64(d)) }
func newClock() *clock {
	c := &clock{}
	c.t.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func env(n int, fill byte) []byte             { return bytes.Repeat([]byte{fill}, n) }
func tagOf(s string) Tag                      { return TagFor(bytes.Repeat([]byte{1}, 32), peer.ID(s)) }
func (c *clock) in(d time.Duration) time.Time { return c.now().Add(d) }

func TestFrames(t *testing.T) {
	tag := tagOf("bob")
	exp := time.UnixMilli(1_800_000_000_000)
	reg, err := Register(Registration{Endpoint: "https://push.example/up/abc", Channels: true})
	if err != nil {
		t.Fatal(err)
	}
	ids := []ID{IDOf([]byte("a")), IDOf([]byte("b"))}
	for _, tc := range []struct {
		name  string
		raw   []byte
		check func(*Frame) bool
	}{
		{"deposit", Deposit(tag, exp, env(300, 7)), func(f *Frame) bool {
			return f.Type == FrameDeposit && f.Tag == tag && f.Expiry.Equal(exp) && bytes.Equal(f.Envelope, env(300, 7))
		}},
		{"deliver", Deliver(env(10, 9)), func(f *Frame) bool { return f.Type == FrameDeliver && bytes.Equal(f.Envelope, env(10, 9)) }},
		{"release", Release(ids), func(f *Frame) bool { return f.Type == FrameRelease && len(f.IDs) == 2 && f.IDs[1] == ids[1] }},
		{"register", reg, func(f *Frame) bool { return f.Register != nil && f.Register.Channels && f.Register.Endpoint != "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !IsFrame(tc.raw) {
				t.Fatal("not recognised as a frame")
			}
			f, err := Parse(tc.raw)
			if err != nil || !tc.check(f) {
				t.Fatalf("Parse = %+v, %v", f, err)
			}
		})
	}
}

func TestIDText(t *testing.T) {
	id := IDOf([]byte("envelope"))
	b, err := json.Marshal(map[string]ID{"id": id})
	if err != nil || !strings.Contains(string(b), id.String()) {
		t.Fatalf("JSON %s, %v", b, err)
	}
	var back map[string]ID
	if err := json.Unmarshal(b, &back); err != nil || back["id"] != id {
		t.Fatalf("round trip %v, %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"id":"abc"}`), &back); err == nil {
		t.Fatal("a short ID was accepted")
	}
}

func TestBadFrames(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  []byte
	}{
		{"envelope", []byte{1, 0x02, 0, 0}},
		{"join frame", []byte{1, 0x10, 0}},
		{"short deposit", Deposit(tagOf("x"), time.Now(), nil)},
		{"empty delivery", Deliver(nil)},
		{"release count lies", append(Release([]ID{{1}}), 0)},
		{"empty release", []byte{1, byte(FrameRelease), 0}},
		{"register not JSON", []byte{1, byte(FrameRegister), '{'}},
		{"register plain http", append([]byte{1, byte(FrameRegister)}, `{"endpoint":"http://push.example/x"}`...)},
		{"register nothing", append([]byte{1, byte(FrameRegister)}, `{}`...)},
		{"register credentials", append([]byte{1, byte(FrameRegister)}, `{"endpoint":"https://u:p@push.example/x"}`...)},
		{"oversized deposit", Deposit(tagOf("x"), time.Now(), make([]byte, MaxEnvelope+1))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if f, err := Parse(tc.raw); err == nil {
				t.Fatalf("Parse accepted %+v", f)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Deposit(tagOf("bob"), time.UnixMilli(1), []byte("x")))
	f.Add(Release([]ID{{1}}))
	f.Add(Deliver([]byte("y")))
	f.Add(append([]byte{1, byte(FrameRegister)}, `{"channels":true}`...))
	f.Fuzz(func(t *testing.T, raw []byte) {
		fr, err := Parse(raw)
		if err == nil && fr == nil {
			t.Fatal("nil frame without error")
		}
	})
}

func TestBox(t *testing.T) {
	c := newClock()
	be := newMem()
	box, err := Open(context.Background(), Options{Quota: 1000, Expiry: 24 * time.Hour, Backend: be, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	bob, carol := tagOf("bob"), tagOf("carol")
	id1, err := box.Put("alice", bob, c.in(time.Hour), env(400, 1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := box.Put("alice", bob, c.in(time.Hour), env(400, 1)); err != nil {
		t.Fatalf("the same envelope again: %v", err)
	}
	id2, err := box.Put("dave", carol, c.in(30*24*time.Hour), env(400, 2))
	if err != nil {
		t.Fatal(err)
	}
	if s := box.Stats(); s.Items != 2 || s.Bytes != 800 || s.Recipients != 2 {
		t.Fatalf("stats %+v, want 2 items, 800 bytes, 2 recipients", s)
	}
	if _, err := box.Put("alice", bob, c.in(time.Hour), env(400, 3)); !errors.Is(err, ErrFull) {
		t.Fatalf("over quota: %v, want ErrFull", err)
	}
	if Refusal("message rejected by the remote handler: "+ErrFull.Error()+": 800 of 1000 bytes in use") != ErrFull {
		t.Fatal("a full refusal does not map back to ErrFull")
	}
	if _, err := box.Put("alice", bob, c.in(-time.Second), env(10, 4)); err == nil {
		t.Fatal("an expired envelope was kept")
	}

	// Restart: everything comes back from the backend.
	box, err = Open(context.Background(), Options{Quota: 1000, Expiry: 24 * time.Hour, Backend: be, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	if got := box.For([]Tag{bob}); len(got) != 1 || got[0].ID != id1 || got[0].From != "alice" {
		t.Fatalf("For(bob) = %+v", got)
	}
	if e, err := box.Envelope(id1); err != nil || !bytes.Equal(e, env(400, 1)) {
		t.Fatalf("Envelope = %d bytes, %v", len(e), err)
	}

	// Only the recipient (by tag) or the depositor may release.
	if k, _ := box.Release("mallory", []Tag{tagOf("mallory")}, []ID{id1, id2}); k != 0 {
		t.Fatalf("a third member released %d items", k)
	}
	if k, _ := box.Release("alice", nil, []ID{id2}); k != 0 {
		t.Fatal("alice released an item she did not deposit")
	}
	if k, _ := box.Release("bob", []Tag{bob}, []ID{id1}); k != 1 {
		t.Fatal("the recipient could not release its item")
	}
	id3, _ := box.Put("mallory", bob, c.in(time.Hour), env(10, 5))
	if k, _ := box.DropFrom("mallory"); k != 1 || box.For([]Tag{bob}) != nil {
		t.Fatalf("DropFrom dropped %d; left %v (want %s gone)", k, box.For([]Tag{bob}), id3)
	}

	// Expiry: capped by the box's own, whatever the sender asked.
	c.add(24*time.Hour + time.Second)
	if len(box.For([]Tag{carol})) != 0 {
		t.Fatal("an expired item is still offered")
	}
	if k, _ := box.Expire(); k != 1 {
		t.Fatalf("Expire dropped %d, want 1", k)
	}
	if s := box.Stats(); s.Items != 0 || s.Bytes != 0 || len(be.m) != 0 {
		t.Fatalf("after expiry: %+v, %d records", s, len(be.m))
	}

	off, _ := Open(context.Background(), Options{Backend: newMem(), Now: c.now})
	if _, err := off.Put("alice", bob, c.in(time.Hour), env(1, 1)); !errors.Is(err, ErrOff) {
		t.Fatalf("no quota: %v, want ErrOff", err)
	}
}

// gatedBackend's Put waits until want Puts are under way at once (or a
// deadline passes), as bbolt's Batch gathers the writes in flight.
type gatedBackend struct {
	*memBackend
	want    int
	mu      sync.Mutex
	in      int
	all     chan struct{}
	timeout bool
}

func (g *gatedBackend) Put(k, v []byte) error {
	g.mu.Lock()
	if g.in++; g.in == g.want {
		close(g.all)
	}
	g.mu.Unlock()
	select {
	case <-g.all:
	case <-time.After(10 * time.Second):
		g.mu.Lock()
		g.timeout = true
		g.mu.Unlock()
	}
	return g.memBackend.Put(k, v)
}

// TestPutsInFlightTogether: deposits in flight reach the backend together
// (so core/store's Batch shares one transaction and fsync among them),
// not one after the other behind the box's lock; the quota still holds
// for puts in flight together.
func TestPutsInFlightTogether(t *testing.T) {
	c := newClock()
	g := &gatedBackend{memBackend: newMem(), want: 4, all: make(chan struct{})}
	box, err := Open(context.Background(), Options{Quota: 4 * 100, Backend: g, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 5)
	for i := range 4 {
		wg.Go(func() { _, errs[i] = box.Put("alice", tagOf("bob"), c.in(time.Hour), env(100, byte(i))) })
	}
	// The fifth, once the four are being written, is over the quota.
	testenv.WaitFor(t, "four puts taking their bytes", 30*time.Second, func() bool { return box.Stats().Bytes == 400 })
	_, errs[4] = box.Put("alice", tagOf("bob"), c.in(time.Hour), env(100, 9))
	wg.Wait()
	if g.timeout {
		t.Fatal("the puts reached the backend one at a time")
	}
	for i, err := range errs[:4] {
		if err != nil {
			t.Errorf("put %d: %v", i, err)
		}
	}
	if !errors.Is(errs[4], ErrFull) {
		t.Errorf("a put over the quota while four were in flight: %v, want ErrFull", errs[4])
	}
	if st := box.Stats(); st.Items != 4 || st.Bytes != 400 {
		t.Errorf("held %d items, %d bytes; want 4, 400", st.Items, st.Bytes)
	}
}

func TestWaker(t *testing.T) {
	c := newClock()
	var posts atomic.Int32
	var bad atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.ContentLength != 0 || r.Header.Get("TTL") == "" {
			bad.Store(r.Method + " " + r.Header.Get("TTL"))
		}
		if strings.HasSuffix(r.URL.Path, "/gone") {
			w.WriteHeader(http.StatusGone)
			return
		}
		posts.Add(1)
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()
	be := newMem()
	w, err := NewWaker(context.Background(), WakerOptions{Backend: be, MinInterval: time.Minute, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if sent, _ := w.Wake(ctx, "bob", nil); sent {
		t.Fatal("woke a device that never registered")
	}
	if err := w.Register("bob", Registration{Endpoint: srv.URL + "/up/bob"}); err != nil {
		t.Fatal(err)
	}
	var chans atomic.Int32
	if err := w.Register("carol", Registration{Endpoint: srv.URL + "/gone", Channels: true}); err != nil {
		t.Fatal(err)
	}
	if sent, err := w.Wake(ctx, "bob", nil); !sent || err != nil {
		t.Fatalf("Wake = %v, %v", sent, err)
	}
	if sent, _ := w.Wake(ctx, "bob", nil); sent {
		t.Fatal("a second wake-up within MinInterval went out")
	}
	c.add(time.Minute)
	if sent, _ := w.Wake(ctx, "bob", nil); !sent {
		t.Fatal("no wake-up after MinInterval")
	}
	if posts.Load() != 2 {
		t.Fatalf("%d posts, want 2", posts.Load())
	}
	if v := bad.Load(); v != nil {
		t.Fatalf("push request not content-free RFC 8030: %v", v)
	}
	// A gone endpoint is dropped; the channel wake-up still goes.
	_, err = w.Wake(ctx, "carol", func(context.Context) error { chans.Add(1); return nil })
	if !errors.Is(err, ErrEndpointGone) || chans.Load() != 1 {
		t.Fatalf("gone endpoint: %v, %d channel wake-ups", err, chans.Load())
	}
	if r, _ := w.Registered("carol"); r.Endpoint != "" || !r.Channels {
		t.Fatalf("carol's registration after 410: %+v", r)
	}
	// Registrations survive a restart.
	w, _ = NewWaker(ctx, WakerOptions{Backend: be, Now: c.now})
	if s := w.Stats(); s.Registered != 2 {
		t.Fatalf("%d registrations after restart, want 2", s.Registered)
	}
}

// TestFullRefusalWhileReleasing: a deposit refused for the quota while
// another goroutine releases items (a recipient collecting) must read the
// bytes in use under the lock; under -race this failed when the refusal's
// message read them after unlocking.
func TestFullRefusalWhileReleasing(t *testing.T) {
	c := newClock()
	box, err := Open(context.Background(), Options{Quota: 100, Backend: newMem(), Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	held := env(100, 1)
	id, err := box.Put("alice", tagOf("bob"), c.in(time.Hour), held)
	if err != nil {
		t.Fatal(err)
	}
	const rounds = 200
	var wg sync.WaitGroup
	wg.Go(func() {
		for range rounds {
			if _, err := box.Release("bob", []Tag{tagOf("bob")}, []ID{id}); err != nil {
				t.Error(err)
				return
			}
			if _, err := box.Put("alice", tagOf("bob"), c.in(time.Hour), held); err != nil && !errors.Is(err, ErrFull) {
				t.Error(err)
				return
			}
		}
	})
	refused := 0
	for i := range rounds {
		_, err := box.Put("carol", tagOf("dave"), c.in(time.Hour), env(100, byte(i+2)))
		switch {
		case errors.Is(err, ErrFull):
			refused++
		case err != nil:
			t.Fatal(err)
		default: // it got the room the release freed: give it back
			if _, err := box.Release("dave", []Tag{tagOf("dave")}, []ID{IDOf(env(100, byte(i+2)))}); err != nil {
				t.Fatal(err)
			}
		}
	}
	wg.Wait()
	if refused == 0 {
		t.Error("no deposit was refused for the quota: the test did not exercise the refusal")
	}
	if st := box.Stats(); st.Bytes > 100 {
		t.Errorf("%d bytes held, over the 100-byte quota", st.Bytes)
	}
}
