package node

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/remora-p2p/remora/core/circle"
	"github.com/remora-p2p/remora/core/envelope"
)

// TestControlKindsDeduplicated: every inbound kind is deduplicated, not
// only chat. A key query replayed 20 times (by a service operator, or a
// member) is answered once; each other control kind replayed 20 times is
// handled once and its 19 copies counted as duplicates.
func TestControlKindsDeduplicated(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p nodes")
	}
	nodes := startDirNodes(t, t.TempDir(), 0, nil, "alice", "bob")
	a, b := nodes[0], nodes[1]
	ctx := context.Background()
	_, id := newCircle(t, "replays", a, b)
	ac, _ := a.n.circleOf(id)
	bc, _ := b.n.circleOf(id)
	chID := a.n.channels[0].ID
	sealFromBob := func(kind envelope.Kind, body []byte, i byte) []byte {
		t.Helper()
		now := time.Now()
		e := &OutboxEntry{ID: envelope.MessageID{0xdd, byte(kind), i}, Circle: id, Kind: kind, Direct: true, Body: body,
			Created: now, Expiry: now.Add(time.Hour)}
		sealed, err := b.n.seal(bc, e, a.n.ID(), envelope.Route{Channel: chID, MaxSize: 64 << 10})
		if err != nil || len(sealed.Envelopes) != 1 {
			t.Fatalf("seal %v: %v", kind, err)
		}
		return sealed.Envelopes[0]
	}
	query := circle.KeyMsg{Kind: circle.MsgKeyRequest, Circle: id, Epoch: ac.Epoch()}
	envs := []struct {
		name string
		raw  []byte
	}{
		{"key query", sealFromBob(envelope.KindKeyQuery, query.Marshal(), 0)},
		{"ack", sealFromBob(envelope.KindAck, encodeAck([]envelope.MessageID{{1}}), 1)},
		{"punch", sealFromBob(envelope.KindPunch, make([]byte, 12), 2)},
		{"roster", sealFromBob(envelope.KindRoster, []byte("not an operation"), 3)},
		{"peer exchange", sealFromBob(envelope.KindPeerExchange, []byte("gossip"), 4)},
		{"wake", sealFromBob(envelope.KindWake, nil, 5)},
	}
	// bob goes away, so alice's answers wait in her outbox to be counted.
	b.stop()
	answers := func() int {
		a.n.mu.Lock()
		defer a.n.mu.Unlock()
		n := 0
		for _, e := range a.n.outbox {
			if e.Kind == envelope.KindSenderKey && len(e.Pending) == 1 && e.Pending[0] == peer.ID(b.n.ID()) {
				n++
			}
		}
		return n
	}
	before := answers()
	for _, e := range envs {
		dups := a.n.Counters()["duplicates_removed"]
		for range 20 {
			if err := a.n.receive(ctx, chID, e.raw, "channel:shared", ""); err != nil {
				t.Fatalf("%s: %v", e.name, err)
			}
		}
		if got := a.n.Counters()["duplicates_removed"] - dups; got != 19 {
			t.Errorf("%s replayed 20 times: %d copies removed as duplicates, want 19", e.name, got)
		}
	}
	if got := answers() - before; got != 1 {
		t.Errorf("a key query replayed 20 times was answered %d times, want once", got)
	}
	// A restart forgets nothing: the set is durable.
	a.stop()
	a.start()
	defer a.stop()
	dups := a.n.Counters()["duplicates_removed"]
	if err := a.n.receive(ctx, chID, envs[0].raw, "channel:shared", ""); err != nil {
		t.Fatal(err)
	}
	if got := a.n.Counters()["duplicates_removed"] - dups; got != 1 {
		t.Errorf("a key query replayed after a restart: %d removed as duplicate, want 1", got)
	}
}
