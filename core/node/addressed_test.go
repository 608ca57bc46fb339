package node

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/testenv"
)

// addressedChannel declares a dir channel addressed (like mail in direct
// mode) and records the To of every item published.
type addressedChannel struct {
	sdk.Channel
	mu  sync.Mutex
	tos [][]string
}

func (a *addressedChannel) Capabilities() sdk.Capabilities {
	c := a.Channel.Capabilities()
	c.Addressed = true
	return c
}

func (a *addressedChannel) Publish(ctx context.Context, req sdk.PublishRequest) (sdk.PublishResponse, error) {
	a.mu.Lock()
	for _, it := range req.Items {
		a.tos = append(a.tos, it.To)
	}
	a.mu.Unlock()
	return a.Channel.Publish(ctx, req)
}

// On an addressed channel every item (join frames, presence, messages) goes
// to the channel's configured recipients.
func TestAddressedChannelGetsRecipients(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p nodes")
	}
	want := []string{"alice@example.test", "bob@example.test"}
	var chans []*addressedChannel
	var mu sync.Mutex
	nodes := startDirNodes(t, t.TempDir(), 0, func(ch sdk.Channel) sdk.Channel {
		a := &addressedChannel{Channel: ch}
		mu.Lock()
		chans = append(chans, a)
		mu.Unlock()
		return a
	}, "alice", "bob")
	// startDirNodes started them without To: restart with it configured.
	for _, n := range nodes {
		n.stop()
		n.tune = func(o *Options) { o.Channels[0].To = want }
		n.start()
	}
	ci, err := nodes[0].n.CreateCircle(context.Background(), api.CreateCircleRequest{Name: "mail"})
	if err != nil {
		t.Fatal(err)
	}
	join(t, nodes[0], nodes[1], ci.ID)
	if _, err := nodes[0].n.Send(context.Background(), api.SendRequest{Circle: ci.ID, To: []string{nodes[1].n.ID().String()}, Text: "to bob"}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "bob got the message", 30*time.Second, func() bool { return texts(inbox(t, nodes[1].n))["to bob"] == 1 })
	mu.Lock()
	defer mu.Unlock()
	n := 0
	for _, a := range chans {
		a.mu.Lock()
		for _, to := range a.tos {
			n++
			if !slices.Equal(to, want) {
				t.Errorf("an item went to %v, want %v", to, want)
			}
		}
		a.mu.Unlock()
	}
	if n == 0 {
		t.Fatal("nothing was published: the test saw nothing")
	}
}
