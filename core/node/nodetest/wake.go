package nodetest

import (
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/core/mailbox"
	"github.com/remora-p2p/remora/core/node"
	"github.com/remora-p2p/remora/core/store"
	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/testenv"
)

// WakeUp is TestWakeUp over a push-capable channel: holder keeps a mailbox
// and stays online; sleeper registers with it for wake-ups over channels,
// then sleeps (its node stops). What stays awake on the device is its push
// listener: a subscription on its account, from where its node stopped
// (IMAP IDLE, Matrix /sync, Mastodon streaming). sender, whose channel is
// down by then, sends sleeper two messages: they reach only the holder's
// mailbox, and the first makes the holder post one wake envelope on the
// channel (the second is held back by the rate limit). The listener sees
// the post, the device's node starts, reads the wake envelope from the
// service, dials its members and gets both messages once (from the
// holder's mailbox, or live from the sender once they connect).
func WakeUp(t *testing.T, holder, sleeper, sender *Node, circleID string) {
	t.Helper()
	ctx := context.Background()
	holder.Stop()
	sleeper.Stop()
	sender.Stop()
	var down atomic.Bool
	open := sender.Channel.Open
	sender.Channel.Open = func(ctx context.Context, stateDir string) (sdk.Channel, error) {
		ch, err := open(ctx, stateDir)
		if err != nil {
			return nil, err
		}
		return downable{ch, &down}, nil
	}
	ht, st := holder.Tune, sleeper.Tune
	holder.Tune = func(o *node.Options) {
		if ht != nil {
			ht(o)
		}
		o.Mailbox.Quota = 1 << 20
	}
	sleeper.Tune = func(o *node.Options) {
		if st != nil {
			st(o)
		}
		o.Mailbox.Wake = &mailbox.Registration{Channels: true}
	}
	holder.Start()
	sleeper.Start()
	sender.Start()
	testenv.WaitFor(t, "holder and sleeper connected", 90*time.Second, func() bool { return Connected(holder, sleeper) })
	testenv.WaitFor(t, "sender and holder connected", 90*time.Second, func() bool { return Connected(sender, holder) })
	testenv.WaitFor(t, "sleeper registered for wake-ups", 30*time.Second, func() bool {
		return holder.N.Counters()["mailbox_wake_registrations"] >= 1
	})
	sleeperID := sleeper.N.ID().String()
	sleeper.Stop()
	down.Store(true) // from now on the message can only go to the holder's mailbox

	db, err := store.Open(filepath.Join(sleeper.State, "remora.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cur, err := db.Cursor(sleeper.Channel.Name)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	listener, err := sleeper.Channel.Open(ctx, filepath.Join(sleeper.State, "push-listener"))
	if err != nil {
		t.Fatalf("push listener: %v", err)
	}
	posts := make(chan time.Time, 64)
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		listener.Subscribe(lctx, sdk.SubscribeRequest{Cursor: cur}, sdk.SinkFunc(func(_ context.Context, _ sdk.Delivery) error {
			select {
			case posts <- time.Now():
			default:
			}
			return nil
		}))
	}()
	defer func() { cancel(); <-done; listener.Close() }()

	t0 := time.Now()
	send := func(text string) {
		if _, err := sender.N.Send(ctx, api.SendRequest{Circle: circleID, To: []string{sleeperID}, Text: text}); err != nil {
			t.Fatal(err)
		}
	}
	send("wake up")
	testenv.WaitFor(t, "the holder sending a wake-up", 60*time.Second, func() bool { return holder.N.Counters()["mailbox_wakeups"] >= 1 })
	select {
	case at := <-posts:
		// The first post may be a member's presence record rather than
		// the wake-up: the listener cannot open them.
		t.Logf("the push listener saw its first post %v after the send", at.Sub(t0).Round(time.Millisecond))
	case <-time.After(60 * time.Second):
		t.Fatal("the push listener saw nothing")
	}
	send("and again")
	testenv.WaitFor(t, "the holder keeping both and holding back the second wake-up", 30*time.Second, func() bool {
		st, _ := holder.N.Status(ctx)
		return st.Mailbox.WakeLimited >= 1 && holder.N.Counters()["mailbox_held"] >= 2
	})
	if st, _ := holder.N.Status(ctx); st.Mailbox.WakeChannel != 1 || st.Mailbox.WakeFailed != 0 {
		t.Errorf("holder's wake-ups: %+v, want one on the channel, none failed", st.Mailbox)
	}

	// Woken: the device's node runs again.
	sleeper.Start()
	testenv.WaitFor(t, "the sleeper reading the wake-up", 60*time.Second, func() bool { return sleeper.N.Counters()["wakeups_received"] >= 1 })
	testenv.WaitFor(t, "the sleeper getting both messages", 60*time.Second, func() bool {
		got := Texts(t, sleeper.N)
		return got["wake up"] == 1 && got["and again"] == 1
	})
	// From the holder's mailbox, or live from the sender (still online, it
	// retries when the sleeper connects): never from the channel.
	msgs, _ := sleeper.N.Messages(ctx, 0, 1000)
	for _, m := range msgs {
		if (m.Text == "wake up" || m.Text == "and again") && strings.HasPrefix(m.Path, "channel:") {
			t.Errorf("%q arrived by %s, want the holder's mailbox or the sender live", m.Text, m.Path)
		}
	}
}

// downable is a channel that can go down: every post then fails. Its
// board (where the channel has one) stays up: a node finds its members
// there, and only posts are being stopped here.
type downable struct {
	sdk.Channel
	down *atomic.Bool
}

func (d downable) Publish(ctx context.Context, req sdk.PublishRequest) (sdk.PublishResponse, error) {
	if !d.down.Load() {
		return d.Channel.Publish(ctx, req)
	}
	res := make([]sdk.PublishResult, len(req.Items))
	for i := range res {
		res[i].Err = sdk.ErrUnavailable
	}
	return sdk.PublishResponse{Results: res}, nil
}

func (d downable) Put(ctx context.Context, req sdk.PutRequest) error {
	b, ok := d.Channel.(sdk.Board)
	if !ok {
		return sdk.ErrUnsupported
	}
	return b.Put(ctx, req)
}

func (d downable) Get(ctx context.Context, req sdk.GetRequest) (sdk.GetResponse, error) {
	b, ok := d.Channel.(sdk.Board)
	if !ok {
		return sdk.GetResponse{}, sdk.ErrUnsupported
	}
	return b.Get(ctx, req)
}
