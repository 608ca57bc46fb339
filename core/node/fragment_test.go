package node

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/core/circle"
	"github.com/remora-p2p/remora/core/envelope"
	"github.com/remora-p2p/remora/core/store"
	"github.com/remora-p2p/remora/testenv"
)

// A message split into fragments survives a receiver restart between its
// fragments: the fragments already read are held durably, not just in the
// reassembler's memory.
func TestFragmentsSurviveRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p nodes")
	}
	root := t.TempDir()
	shared := filepath.Join(root, "shared")
	os.MkdirAll(shared, 0o755)
	a := startNode(t, "alice", filepath.Join(root, "a"), shared)
	b := startNode(t, "bob", filepath.Join(root, "b"), shared)
	defer a.stop()
	ci, err := a.n.CreateCircle(context.Background(), api.CreateCircleRequest{Name: "f"})
	if err != nil {
		t.Fatal(err)
	}
	join(t, a, b, ci.ID)
	c, _ := a.n.circleOf(mustParse(t, ci.ID))
	testenv.WaitFor(t, "bob holds alice's sender key", 30*time.Second, func() bool {
		_, ok := keys{b.n}.MessageKeys(c.ID().EnvelopeID(), envelope.Epoch(c.Epoch()), a.n.ID())
		return ok
	})

	body := bytes.Repeat([]byte("fragmented "), 600) // 6.6 KB
	now := time.Now()
	e := &OutboxEntry{ID: envelope.MessageID{1, 2, 3}, Circle: c.ID(), Kind: envelope.KindChat, Body: body, Created: now, Expiry: now.Add(time.Hour)}
	sealed, err := a.n.seal(c, e, "", envelope.Route{Channel: "shared", MaxSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	if len(sealed.Envelopes) < 4 {
		t.Fatalf("%d fragments, want several", len(sealed.Envelopes))
	}
	last := len(sealed.Envelopes) - 1
	for _, env := range sealed.Envelopes[:last] {
		if err := b.n.receive(context.Background(), "shared", env, "channel:shared", ""); err != nil {
			t.Fatalf("fragment: %v", err)
		}
	}
	b.stop()
	b.start()
	defer b.stop()
	if err := b.n.receive(context.Background(), "shared", sealed.Envelopes[last], "channel:shared", ""); err != nil {
		t.Fatalf("last fragment: %v", err)
	}
	testenv.WaitFor(t, "the reassembled message in bob's inbox", 10*time.Second, func() bool {
		for _, m := range inbox(t, b.n) {
			if m.Text == string(body) {
				return true
			}
		}
		return false
	})
	held, _ := b.db.Held()
	for _, h := range held {
		if h.Key[:2] == "f:" {
			t.Errorf("fragment %s still held after its message completed", h.Key)
		}
	}
}

func mustParse(t *testing.T, s string) circle.ID {
	t.Helper()
	id, err := circle.ParseID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestHeldQuota: envelopes held for one sender (waiting for its key, or
// fragments of its unfinished messages) stop at MaxHeldPerPeer; the rest
// are dropped and counted, and other senders keep their own quota.
func TestHeldQuota(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a libp2p node")
	}
	// Idle: a retry running meanwhile would drop these junk envelopes,
	// which open as nothing, and free quota.
	a := startIdleDirNode(t, func(o *Options) { o.MaxHeldPerPeer = 3 })
	flooder, other := peer.ID("flooder"), peer.ID("other")
	hold := func(sender peer.ID, kind error, i int) {
		t.Helper()
		raw := []byte(fmt.Sprintf("envelope %v %d from %s", kind, i, sender))
		oe := &envelope.OpenError{Err: kind, Sender: sender, ID: envelope.MessageID{byte(i)}}
		if err := a.n.openFailed("shared", raw, "channel:shared", oe); err != nil {
			t.Fatalf("openFailed: %v", err)
		}
	}
	for i := range 5 {
		hold(flooder, envelope.ErrKeyNotYet, i)
		hold(flooder, envelope.ErrPending, i)
	}
	hold(other, envelope.ErrKeyNotYet, 0)
	count := func(prefix string) int {
		n, err := a.db.CountHeld(prefix)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if got := count(keyWaitPrefix(flooder)); got != 3 {
		t.Errorf("%d envelopes held waiting for the flooder's key, want 3", got)
	}
	if got := count(fragmentSenderPrefix(flooder)); got != 3 {
		t.Errorf("%d fragments of the flooder held, want 3", got)
	}
	if got := count(keyWaitPrefix(other)); got != 1 {
		t.Errorf("another sender's envelope: %d held, want 1", got)
	}
	if got := a.n.Counters()["dropped_held_quota"]; got != 4 {
		t.Errorf("dropped_held_quota = %d, want 4", got)
	}
}

// TestHeldByteQuota: held envelopes are bounded in bytes, not only in
// items. One member's 40 MiB of fragments that never complete are not
// held (8 MiB per sender by default), several members together stop at
// the total (32 MiB), another sender's envelopes still fit while the
// flooder is over its own quota, and the drop is logged once per sender
// and counted each time.
func TestHeldByteQuota(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a libp2p node")
	}
	logs := &recordCounter{}
	a := startIdleDirNode(t, func(o *Options) { o.Logger = slog.New(logs) }) // no retry drops the junk meanwhile
	const piece = 256 << 10
	hold := func(sender peer.ID, kind error, i int) {
		t.Helper()
		raw := bytes.Repeat([]byte{byte(i), byte(i >> 8)}, piece/2)
		oe := &envelope.OpenError{Err: kind, Sender: sender, ID: envelope.MessageID{byte(i), byte(i >> 8)}}
		if err := a.n.openFailed("shared", raw, "channel:shared", oe); err != nil {
			t.Fatalf("openFailed: %v", err)
		}
	}
	usage := func(prefix string) int64 {
		_, b, err := a.db.HeldUsage(prefix)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	flooder := peer.ID("flooder")
	for i := range 40 << 20 / piece {
		hold(flooder, envelope.ErrPending, i)
	}
	if got := usage(fragmentSenderPrefix(flooder)); got > a.n.opts.MaxHeldBytesPerPeer || got < a.n.opts.MaxHeldBytesPerPeer/2 {
		t.Errorf("40 MiB of one member's fragments: %d bytes held, want about %d", got, a.n.opts.MaxHeldBytesPerPeer)
	}
	// Another sender is not blocked by the flooder's quota.
	hold("quiet", envelope.ErrKeyNotYet, 0)
	if got := usage(keyWaitPrefix("quiet")); got == 0 {
		t.Error("another sender's envelope was not held")
	}
	// Five more flooders: the total stops them.
	for f := range 5 {
		for i := range 12 << 20 / piece {
			hold(peer.ID(fmt.Sprintf("flooder%d", f)), envelope.ErrPending, i)
		}
	}
	if got := usage(""); got > a.n.opts.MaxHeldBytes {
		t.Errorf("%d bytes held in all, quota %d", got, a.n.opts.MaxHeldBytes)
	}
	drops := a.n.Counters()["dropped_held_quota"]
	if drops < 40<<20/piece-a.n.opts.MaxHeldBytesPerPeer/piece {
		t.Errorf("dropped_held_quota = %d, want every refused fragment counted", drops)
	}
	// One line per sender that hit its quota (6) and one for the total,
	// not one per drop.
	if got := logs.count("quota"); got < 2 || got > 7 {
		t.Errorf("%d quota log lines for %d drops, want one per sender and one for the total", got, drops)
	}
}

// recordCounter is a slog handler that counts records by message.
type recordCounter struct {
	mu   sync.Mutex
	msgs []string
}

func (r *recordCounter) Enabled(context.Context, slog.Level) bool { return true }
func (r *recordCounter) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recordCounter) WithGroup(string) slog.Handler            { return r }
func (r *recordCounter) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Message)
	return nil
}

func (r *recordCounter) count(substr string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if strings.Contains(m, substr) {
			n++
		}
	}
	return n
}

// TestRetryHeldWalksPages: retryHeld, deleting as it walks, goes through
// every held envelope of several pages in one pass (here dropping the
// expired ones). That the walk reads a page at a time is
// store.TestWalkHeld's (one read transaction per page): retryHeld has no
// other way to read them.
func TestRetryHeldWalksPages(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a libp2p node")
	}
	a := startIdleDirNode(t, nil)
	past := time.Now().Add(-time.Minute)
	n := 3*heldPage + 5
	for i := range n {
		h := &store.HeldEnvelope{Key: fmt.Sprintf("k:p%d:%04d", i%3, i), Channel: "shared", Raw: []byte{byte(i)}, Until: past}
		if err := a.db.PutHeld(h); err != nil {
			t.Fatal(err)
		}
	}
	before := a.n.Counters()["dropped_undecryptable_expired"]
	a.n.retryHeld()
	if left, _ := a.db.CountHeld(""); left != 0 {
		t.Errorf("%d of %d expired envelopes left after one pass", left, n)
	}
	if got := a.n.Counters()["dropped_undecryptable_expired"] - before; got < int64(n) {
		t.Errorf("%d expired envelopes counted, want %d", got, n)
	}
}

// TestCutOffDropsHeld: cutting off a device deletes, at once and counted,
// what is held for it (envelopes waiting for its key, fragments of its
// unfinished messages) and nobody else's. On running nodes the retry
// after a roster change may get there first (TestRemovalTakesEffectAtOnce
// cannot tell which did); here nothing else runs.
func TestCutOffDropsHeld(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a libp2p node")
	}
	a := startIdleDirNode(t, nil)
	removed, other := peer.ID("removed"), peer.ID("other")
	for i, kind := range []error{envelope.ErrKeyNotYet, envelope.ErrPending, envelope.ErrPending} {
		for _, sender := range []peer.ID{removed, other} {
			raw := []byte(fmt.Sprintf("envelope %d of %s", i, sender))
			oe := &envelope.OpenError{Err: kind, Sender: sender, ID: envelope.MessageID{byte(i)}}
			if err := a.n.openFailed("shared", raw, "channel:shared", oe); err != nil {
				t.Fatalf("openFailed: %v", err)
			}
		}
	}
	before := a.n.Counters()["dropped_held_removed"]
	a.n.cutOff(removed, false)
	for _, prefix := range []string{keyWaitPrefix(removed), fragmentSenderPrefix(removed)} {
		if n, _ := a.db.CountHeld(prefix); n != 0 {
			t.Errorf("%d held under %s after cutting it off", n, prefix)
		}
	}
	if n, _ := a.db.CountHeld(""); n != 3 {
		t.Errorf("%d held in all, want the other sender's 3", n)
	}
	if got := a.n.Counters()["dropped_held_removed"] - before; got != 3 {
		t.Errorf("dropped_held_removed went up by %d, want 3", got)
	}
}
