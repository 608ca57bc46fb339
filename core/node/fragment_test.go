package node

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/core/circle"
	"github.com/remora-p2p/remora/core/envelope"
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
	a := startDirNodes(t, t.TempDir(), 0, nil, "alice")[0]
	a.n.opts.MaxHeldPerPeer = 3
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
