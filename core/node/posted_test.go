package node

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/core/envelope"
	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/testenv"
)

// stallChannel blocks Publish while stalled (a server that stops answering)
// and counts the calls that reached it.
type stallChannel struct {
	sdk.Channel
	stalled *atomic.Bool
	calls   *atomic.Int64
}

func (s stallChannel) Publish(ctx context.Context, req sdk.PublishRequest) (sdk.PublishResponse, error) {
	if s.stalled.Load() {
		s.calls.Add(1)
		<-ctx.Done()
		return sdk.PublishResponse{}, ctx.Err()
	}
	return s.Channel.Publish(ctx, req)
}

// TestStopBeforePublishLosesNothing: a message handed to the channel's
// queue but not yet published when its sender stops is posted again after
// the restart. The outbox used to note it "posted" as it was queued, so the
// restarted sender never posted it and the offline recipient never got it
// (BenchmarkOfflineMember/imap: 995 of 1,000).
func TestStopBeforePublishLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p nodes")
	}
	var stalled atomic.Bool
	var calls atomic.Int64
	wrap := func(ch sdk.Channel) sdk.Channel { return stallChannel{ch, &stalled, &calls} }
	slow := func(o *Options) { o.PresenceInterval = time.Hour }
	nodes := startDirNodesWith(t, t.TempDir(), 0, wrap, slow, "alice", "bob")
	alice, bob := nodes[0], nodes[1]
	circleID, _ := newCircle(t, "friends", alice, bob)
	ctx := context.Background()
	// bob holds alice's sender key before he goes (what this test is about
	// is the outbox, not key hand-outs)
	if _, err := alice.n.Send(ctx, api.SendRequest{Circle: circleID, Text: "hello"}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "bob has alice's first message", time.Minute, func() bool { return texts(inbox(t, bob.n))["hello"] > 0 })
	testenv.WaitFor(t, "alice's outbox empty", time.Minute, func() bool {
		alice.n.mu.Lock()
		defer alice.n.mu.Unlock()
		return len(alice.n.outbox) == 0
	})
	bob.stop()
	stalled.Store(true)
	if _, err := alice.n.Send(ctx, api.SendRequest{Circle: circleID, Text: "queued at stop"}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the message handed to the stalled channel", time.Minute, func() bool { return calls.Load() > 0 })
	alice.stop()

	stalled.Store(false)
	alice.start()
	t.Cleanup(alice.stop)
	testenv.WaitFor(t, "alice's outbox says all it holds (the message, bob's keys) went to the channel", time.Minute, func() bool {
		alice.n.mu.Lock()
		defer alice.n.mu.Unlock()
		chat := false
		for _, e := range alice.n.outbox {
			if _, ok := e.Channels["shared"]; !ok {
				return false
			}
			chat = chat || e.Kind == envelope.KindChat
		}
		return chat
	})
	alice.stop() // the channel is the only path left
	bob.start()
	t.Cleanup(bob.stop)
	t.Cleanup(func() { // what bob had, for a failure
		if !t.Failed() {
			return
		}
		for _, m := range inbox(t, bob.n) {
			t.Logf("bob has %q by %s", m.Text, m.Path)
		}
		t.Logf("bob counters %v, alice counters %v", bob.n.Counters(), alice.n.Counters())
		chs, _ := bob.n.Channels(context.Background())
		t.Logf("bob's channels: %+v", chs)
	})
	testenv.WaitFor(t, "bob has the message from the channel", time.Minute, func() bool {
		for _, m := range inbox(t, bob.n) {
			if m.Text == "queued at stop" && strings.HasPrefix(m.Path, "channel:") {
				return true
			}
		}
		return false
	})
}
