package node

import (
	"context"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/testenv"
)

// fastChannel declares a dir channel a push channel with low latency, the
// kind a probe window may be coordinated over (like a Matrix room).
type fastChannel struct{ sdk.Channel }

func (f fastChannel) Capabilities() sdk.Capabilities {
	c := f.Channel.Capabilities()
	c.Push, c.Latency = true, sdk.Duration(200*time.Millisecond)
	return c
}

func TestPunchWindowOverPushChannel(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p nodes")
	}
	nodes := startDirNodes(t, t.TempDir(), 0, func(ch sdk.Channel) sdk.Channel { return fastChannel{ch} }, "alice", "bob")
	a, b := nodes[0], nodes[1]
	ci, err := a.n.CreateCircle(context.Background(), api.CreateCircleRequest{Name: "punch"})
	if err != nil {
		t.Fatal(err)
	}
	join(t, a, b, ci.ID)
	testenv.WaitFor(t, "a first connection", 30*time.Second, func() bool { return a.n.tr.PathTo(b.n.ID()).Live() })

	a.n.tr.Host().Network().ClosePeer(b.n.ID())
	a.n.requestPunch(b.n.ID())
	testenv.WaitFor(t, "bob joining the window", 30*time.Second, func() bool { return b.n.Counters()["punch_windows_joined"] == 1 })
	testenv.WaitFor(t, "a path again", 30*time.Second, func() bool { return a.n.tr.PathTo(b.n.ID()).Live() })
	// A second request within the interval is not sent.
	a.n.requestPunch(b.n.ID())
	time.Sleep(time.Second)
	if got := b.n.Counters()["punch_windows_joined"]; got != 1 {
		t.Fatalf("bob joined %d windows, want 1: requests must be rate-limited", got)
	}
}
