package nodetest

import (
	"context"
	"path/filepath"
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
// (IMAP IDLE, Matrix /sync, Mastodon streaming). holder sends sleeper two
// messages; the first wakes it (one wake envelope on the channel), the
// second is held back by the rate limit. The listener sees the posts (the
// holder posts the messages there too: here the wake-up is redundant, but
// it is what a friend without the message on a channel sends), the
// device's node starts, reads the wake envelope from the service, dials
// its members and gets both messages once.
func WakeUp(t *testing.T, holder, sleeper *Node, circleID string) {
	t.Helper()
	ctx := context.Background()
	holder.Stop()
	sleeper.Stop()
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
	testenv.WaitFor(t, "holder and sleeper connected", 90*time.Second, func() bool { return Connected(holder, sleeper) })
	testenv.WaitFor(t, "sleeper registered for wake-ups", 30*time.Second, func() bool {
		return holder.N.Counters()["mailbox_wake_registrations"] >= 1
	})
	sleeperID := sleeper.N.ID().String()
	sleeper.Stop()

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
		if _, err := holder.N.Send(ctx, api.SendRequest{Circle: circleID, To: []string{sleeperID}, Text: text}); err != nil {
			t.Fatal(err)
		}
	}
	send("wake up")
	testenv.WaitFor(t, "the holder sending a wake-up", 60*time.Second, func() bool { return holder.N.Counters()["mailbox_wakeups"] >= 1 })
	select {
	case at := <-posts:
		t.Logf("the push listener saw a post %v after the send", at.Sub(t0).Round(time.Millisecond))
	case <-time.After(60 * time.Second):
		t.Fatal("the push listener saw nothing")
	}
	send("and again")
	testenv.WaitFor(t, "the second wake-up held back", 30*time.Second, func() bool {
		st, _ := holder.N.Status(ctx)
		return st.Mailbox.WakeLimited >= 1
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
}
