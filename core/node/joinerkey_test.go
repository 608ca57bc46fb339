package node

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/testenv"
)

// TestJoinerGoneAtOnceGetsKey: bob joins and goes at once, before any
// message; alice writes to the circle and goes too, so the channel is the
// only path. When bob comes back he reads alice's message: her sender key
// reached him through the channel like the message. (It did not: bob read
// her key hand-out from the folder a moment before her welcome, when no
// epoch of his routed it, dropped it as not for him and moved his cursor
// past it, and the message waited for a key that never came.)
func TestJoinerGoneAtOnceGetsKey(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p nodes")
	}
	slow := func(o *Options) { o.PresenceInterval = time.Hour }
	nodes := startDirNodesWith(t, t.TempDir(), 0, nil, slow, "alice", "bob")
	alice, bob := nodes[0], nodes[1]
	circleID, _ := newCircle(t, "friends", alice, bob)
	bob.stop()
	ctx := context.Background()
	if _, err := alice.n.Send(ctx, api.SendRequest{Circle: circleID, Text: "while you were away"}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "alice's outbox all on the channel", time.Minute, func() bool {
		alice.n.mu.Lock()
		defer alice.n.mu.Unlock()
		for _, e := range alice.n.outbox {
			if _, ok := e.Channels["shared"]; !ok {
				return false
			}
		}
		return len(alice.n.outbox) > 0
	})
	alice.stop()
	bob.start()
	t.Cleanup(bob.stop)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bob counters %v", bob.n.Counters())
		}
	})
	testenv.WaitFor(t, "bob has alice's message from the channel", time.Minute, func() bool {
		for _, m := range inbox(t, bob.n) {
			if m.Text == "while you were away" && strings.HasPrefix(m.Path, "channel:") {
				return true
			}
		}
		return false
	})
}
