package node

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/core/envelope"
	"github.com/remora-p2p/remora/core/mailbox"
	"github.com/remora-p2p/remora/core/transport"
	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/testenv"
)

// mailboxCircle is four members who met over a folder channel and keep
// each other's addresses in their peer caches; each listens on a fixed port,
// so after a restart they find each other again with no channel at all.
type mailboxCircle struct {
	t      testing.TB
	circle string
	nodes  map[string]*testNode
	up     map[string]bool
	tunes  map[string]func(*Options) // as set up, before configure
	skew   atomic.Int64              // the clock of every node runs this far ahead
}

func newMailboxCircle(t testing.TB) *mailboxCircle {
	t.Helper()
	root := t.TempDir()
	shared := filepath.Join(root, "shared")
	os.MkdirAll(shared, 0o755)
	mc := &mailboxCircle{t: t, nodes: map[string]*testNode{}, up: map[string]bool{}, tunes: map[string]func(*Options){}}
	now := func() time.Time { return time.Now().Add(time.Duration(mc.skew.Load())) }
	for _, name := range []string{"alice", "bob", "carol", "dave"} {
		port := testenv.FreePort(t)
		tn := &testNode{t: t, name: name, state: filepath.Join(root, name), shared: shared, now: now}
		tn.tune = func(o *Options) {
			o.ListenAddrs = []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port)}
			o.Mailbox.Quota = 1 << 20
			o.LiveTimeout = time.Second
		}
		mc.nodes[name] = tn
		mc.tunes[name] = tn.tune
		mc.start(name)
	}
	t.Cleanup(mc.stopAll)
	a := mc.nodes["alice"]
	ci, err := a.n.CreateCircle(context.Background(), api.CreateCircleRequest{Name: "mailbox"})
	if err != nil {
		t.Fatal(err)
	}
	mc.circle = ci.ID
	for _, name := range []string{"bob", "carol", "dave"} {
		join(t, a, mc.nodes[name], ci.ID)
	}
	testenv.WaitFor(t, "every member caching every other's address", 90*time.Second, func() bool {
		for _, x := range mc.nodes {
			for _, y := range mc.nodes {
				if x != y && len(x.n.cache.Addrs(y.n.ID())) == 0 {
					return false
				}
			}
		}
		return true
	})
	mc.stopAll()
	return mc
}

func (mc *mailboxCircle) stopAll() {
	for name := range mc.up {
		mc.stop(name)
	}
}

func (mc *mailboxCircle) start(name string) *testNode {
	tn := mc.nodes[name]
	tn.t = mc.t
	tn.start()
	mc.up[name] = true
	return tn
}

func (mc *mailboxCircle) stop(name string) {
	mc.nodes[name].stop()
	delete(mc.up, name)
}

// restart sets how every node starts from now on: no channel, or the
// channel wrapped by wrap; quota per name (missing: 1 MiB).
func (mc *mailboxCircle) configure(wrap func(sdk.Channel) sdk.Channel, quota map[string]int64) {
	for name, tn := range mc.nodes {
		base := mc.tunes[name]
		tn.tune = func(o *Options) {
			base(o)
			o.LAN = nil
			if wrap == nil {
				o.Channels = nil
			} else {
				o.Channels[0].Impl = wrap(o.Channels[0].Impl)
			}
			if q, ok := quota[name]; ok {
				o.Mailbox.Quota = q
			}
		}
	}
}

// aliceAndFriends starts alice and friends and waits until she is
// connected to each.
func (mc *mailboxCircle) aliceAndFriends(friends ...string) {
	mc.start("alice")
	for _, f := range friends {
		mc.start(f)
	}
	for _, f := range friends {
		mc.connected("alice", f)
	}
}

func (mc *mailboxCircle) connected(x, y string) {
	mc.t.Helper()
	a, b := mc.nodes[x], mc.nodes[y]
	testenv.WaitFor(mc.t, x+" and "+y+" connected", 60*time.Second, func() bool {
		return a.n.tr.PathTo(b.n.ID()).Live() || b.n.tr.PathTo(a.n.ID()).Live()
	})
}

func (mc *mailboxCircle) send(from, to, text string, ttl time.Duration) {
	mc.t.Helper()
	_, err := mc.nodes[from].n.Send(context.Background(), api.SendRequest{Circle: mc.circle, To: []string{mc.nodes[to].n.ID().String()}, Text: text, TTL: api.Duration(ttl)})
	if err != nil {
		mc.t.Fatal(err)
	}
}

// holders lists who keeps from's chat messages, by name.
func (mc *mailboxCircle) holders(from, text string) []string {
	var out []string
	for name := range mc.chatDeposits(from, text) {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// chatDeposits lists the envelopes of from's chat messages (those with
// one of texts, if given) that friends keep, by friend name.
func (mc *mailboxCircle) chatDeposits(from string, texts ...string) map[string][]mailbox.ID {
	n := mc.nodes[from].n
	n.mu.Lock()
	defer n.mu.Unlock()
	out := map[string][]mailbox.ID{}
	for _, e := range n.outbox {
		if e.Kind != envelope.KindChat || len(texts) > 0 && !slices.Contains(texts, string(e.Body)) {
			continue
		}
		for _, d := range e.Deposits {
			for name, tn := range mc.nodes {
				if tn.n != nil && tn.n.ID() == d.Holder {
					out[name] = append(out[name], d.ID)
				}
			}
		}
	}
	return out
}

// keeps reports whether name's mailbox holds any of ids.
func (mc *mailboxCircle) keeps(name string, ids []mailbox.ID) bool {
	for _, id := range ids {
		if _, err := mc.nodes[name].n.mb.box.Envelope(id); err == nil {
			return true
		}
	}
	return false
}

func (mc *mailboxCircle) outboxChats(name string) int {
	n := mc.nodes[name].n
	n.mu.Lock()
	defer n.mu.Unlock()
	k := 0
	for _, e := range n.outbox {
		if e.Kind == envelope.KindChat {
			k++
		}
	}
	return k
}

// downChannel is a channel whose service is gone: every post fails, nothing
// arrives.
type downChannel struct{ sdk.Channel }

func (downChannel) Publish(_ context.Context, req sdk.PublishRequest) (sdk.PublishResponse, error) {
	res := make([]sdk.PublishResult, len(req.Items))
	for i := range res {
		res[i].Err = sdk.ErrUnavailable
	}
	return sdk.PublishResponse{Results: res}, nil
}

func (downChannel) Subscribe(ctx context.Context, _ sdk.SubscribeRequest, _ sdk.Sink) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestFriendMailbox: a message for an offline member waits on online
// friends and reaches it when it comes back, with no channel (or only dead
// ones); a full mailbox sends the sender elsewhere; the recipient's ack
// releases every copy; expiry is enforced after a day without channels.
func TestFriendMailbox(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four libp2p nodes")
	}
	mc := newMailboxCircle(t)
	ctx := context.Background()

	t.Run("no channel", func(t *testing.T) {
		mc.t = t
		defer mc.stopAll()
		mc.configure(nil, nil)
		a, c := mc.start("alice"), mc.start("carol")
		mc.connected("alice", "carol")
		mc.send("alice", "bob", "while you were away", 0)
		testenv.WaitFor(t, "alice handing the message to carol", 30*time.Second, func() bool {
			return slices.Equal(mc.holders("alice", "while you were away"), []string{"carol"})
		})
		ids := mc.chatDeposits("alice", "while you were away")["carol"]
		// doctor on both sides (the outbox also holds control traffic for
		// bob and dave, kept by carol as well).
		st, _ := a.n.Status(ctx)
		if h := holderOf(st, c); h.Items < 1 || h.Bytes < 256 {
			t.Errorf("alice's doctor: holders %+v, want carol keeping our envelopes", st.Mailbox.Holders)
		}
		st, _ = c.n.Status(ctx)
		if !st.Mailbox.Offered || st.Mailbox.HeldItems < 1 || st.Mailbox.HeldRecipients < 1 || st.Mailbox.HeldBytes < 256 {
			t.Errorf("carol's doctor: %+v, want envelopes held for bob", st.Mailbox)
		}
		mc.stop("alice")
		b := mc.start("bob")
		testenv.WaitFor(t, "bob receiving the message from carol", 60*time.Second, func() bool {
			return texts(inbox(t, b.n))["while you were away"] == 1
		})
		for _, m := range inbox(t, b.n) {
			if m.Text == "while you were away" && m.Path != "mailbox:"+c.n.ID().String() {
				t.Errorf("arrived by %q, want carol's mailbox", m.Path)
			}
		}
		testenv.WaitFor(t, "carol releasing the delivered copy", 30*time.Second, func() bool { return !mc.keeps("carol", ids) })
		st, _ = b.n.Status(ctx)
		if holderOf(st, c).Delivered < 1 {
			t.Errorf("bob's doctor: holders %+v, want carol having delivered", st.Mailbox.Holders)
		}
		// Alice comes back: bob's ack waited at carol too.
		mc.start("alice")
		testenv.WaitFor(t, "alice's outbox drained by bob's ack", 60*time.Second, func() bool { return mc.outboxChats("alice") == 0 })
		if got := texts(inbox(t, b.n))["while you were away"]; got != 1 {
			t.Errorf("bob's app saw the message %d times, want 1", got)
		}
	})

	t.Run("two friends, one full", func(t *testing.T) {
		mc.t = t
		defer mc.stopAll()
		mc.configure(nil, map[string]int64{"carol": 64})
		mc.aliceAndFriends("carol", "dave")
		mc.send("alice", "bob", "carol is full", 0)
		a := mc.nodes["alice"]
		testenv.WaitFor(t, "alice told carol is full and handing the message to dave", 30*time.Second, func() bool {
			return slices.Equal(mc.holders("alice", "carol is full"), []string{"dave"}) && a.n.Counters()["mailbox_full_refusals"] > 0
		})
		ids := mc.chatDeposits("alice", "carol is full")["dave"]
		evs, _ := a.n.Events(ctx, 0)
		if !slices.ContainsFunc(evs, func(e api.Event) bool { return e.Kind == "mailbox_full" }) {
			t.Error("no mailbox_full event for the app")
		}
		mc.stop("alice")
		b := mc.start("bob")
		testenv.WaitFor(t, "bob receiving the message from dave", 60*time.Second, func() bool {
			return texts(inbox(t, b.n))["carol is full"] == 1
		})
		testenv.WaitFor(t, "dave releasing the delivered copy", 30*time.Second, func() bool { return !mc.keeps("dave", ids) })
	})

	t.Run("two copies, seen once", func(t *testing.T) {
		mc.t = t
		defer mc.stopAll()
		mc.configure(nil, nil)
		mc.aliceAndFriends("carol", "dave")
		mc.send("alice", "bob", "kept twice", 0)
		testenv.WaitFor(t, "alice handing the message to carol and dave", 30*time.Second, func() bool {
			return slices.Equal(mc.holders("alice", "kept twice"), []string{"carol", "dave"})
		})
		deps := mc.chatDeposits("alice", "kept twice")
		mc.stop("alice")
		b := mc.start("bob")
		testenv.WaitFor(t, "bob receiving the message", 60*time.Second, func() bool {
			return texts(inbox(t, b.n))["kept twice"] >= 1
		})
		testenv.WaitFor(t, "both copies released", 30*time.Second, func() bool {
			return !mc.keeps("carol", deps["carol"]) && !mc.keeps("dave", deps["dave"])
		})
		if got := texts(inbox(t, b.n))["kept twice"]; got != 1 {
			t.Errorf("bob's app saw the message %d times, want 1", got)
		}
	})

	t.Run("channels down for a day", func(t *testing.T) {
		mc.t = t
		defer mc.stopAll()
		mc.configure(func(ch sdk.Channel) sdk.Channel { return downChannel{ch} }, nil)
		mc.start("alice")
		c := mc.start("carol")
		mc.connected("alice", "carol")
		mc.send("alice", "bob", "good for a week", 0)
		mc.send("alice", "bob", "good for two hours", 2*time.Hour)
		testenv.WaitFor(t, "alice handing both messages to carol", 30*time.Second, func() bool {
			return len(mc.chatDeposits("alice", "good for a week", "good for two hours")["carol"]) == 2
		})
		short := mc.chatDeposits("alice", "good for two hours")["carol"]
		mc.stop("alice")
		mc.skew.Add(int64(24 * time.Hour))
		b := mc.start("bob")
		testenv.WaitFor(t, "bob receiving the week-long message a day later", 60*time.Second, func() bool {
			return texts(inbox(t, b.n))["good for a week"] == 1
		})
		testenv.WaitFor(t, "carol dropping the expired one", 30*time.Second, func() bool {
			return c.n.Counters()["mailbox_expired"] >= 1 && !mc.keeps("carol", short)
		})
		if texts(inbox(t, b.n))["good for two hours"] != 0 {
			t.Error("bob got a message past its expiry")
		}
		a := mc.start("alice")
		testenv.WaitFor(t, "alice told the two-hour message is undeliverable", 60*time.Second, func() bool {
			evs, _ := a.n.Events(ctx, 0)
			return slices.ContainsFunc(evs, func(e api.Event) bool { return e.Kind == "undeliverable" }) && mc.outboxChats("alice") == 0
		})
	})
}

func holderOf(st api.Status, tn *testNode) api.MailboxHolder {
	for _, h := range st.Mailbox.Holders {
		if h.PeerID == tn.n.ID().String() {
			return h
		}
	}
	return api.MailboxHolder{}
}

// pushReceiver stands in for a UnifiedPush distributor: it records each
// wake-up POST and what it carried.
type pushReceiver struct {
	srv   *httptest.Server
	mu    sync.Mutex
	posts []pushPost
	got   chan struct{}
}

type pushPost struct {
	method string
	body   []byte
	header http.Header
}

func newPushReceiver(t *testing.T) *pushReceiver {
	pr := &pushReceiver{got: make(chan struct{}, 16)}
	pr.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		pr.mu.Lock()
		pr.posts = append(pr.posts, pushPost{r.Method, body, r.Header.Clone()})
		pr.mu.Unlock()
		pr.got <- struct{}{}
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(pr.srv.Close)
	return pr
}

func (pr *pushReceiver) count() int {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return len(pr.posts)
}

// TestWakeUp (UnifiedPush): bob's device sleeps after registering with
// carol, whose node stays online; alice's message for bob lands in carol's
// mailbox, and carol POSTs an empty wake-up to bob's push endpoint (a local
// receiver standing in for the distributor), once for a burst of messages.
// The distributor wakes bob, whose node connects and gets the messages from
// carol. The channel paths (IMAP IDLE, Matrix /sync, Mastodon streaming)
// are TestWakeUp in the adapters' packages (nodetest.WakeUp).
func TestWakeUp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p nodes")
	}
	mc := newMailboxCircle(t)
	pr := newPushReceiver(t)
	mc.configure(nil, nil)
	tune := mc.nodes["bob"].tune
	mc.nodes["bob"].tune = func(o *Options) {
		tune(o)
		o.Mailbox.Wake = &mailbox.Registration{Endpoint: pr.srv.URL + "/up/device"}
	}
	c := mc.start("carol")
	b := mc.start("bob")
	mc.connected("bob", "carol")
	testenv.WaitFor(t, "bob registered with carol for wake-ups", 30*time.Second, func() bool {
		_, ok := c.n.mb.waker.Registered(b.n.ID())
		return ok
	})
	mc.stop("bob") // asleep
	mc.start("alice")
	mc.connected("alice", "carol")
	t0 := time.Now()
	mc.send("alice", "bob", "wake up", 0)
	select {
	case <-pr.got:
		t.Logf("wake-up POST %v after the send", time.Since(t0).Round(time.Millisecond))
	case <-time.After(60 * time.Second):
		t.Fatal("no wake-up reached the push endpoint")
	}
	mc.send("alice", "bob", "and again", 0)
	testenv.WaitFor(t, "carol holding both for bob and holding back the second wake-up", 30*time.Second, func() bool {
		st, _ := c.n.Status(context.Background())
		return len(mc.chatDeposits("alice", "and again")["carol"]) == 1 && st.Mailbox.WakeLimited >= 1
	})
	if n := pr.count(); n != 1 {
		t.Errorf("%d wake-ups for a burst of two messages, want 1", n)
	}
	pr.mu.Lock()
	p := pr.posts[0]
	pr.mu.Unlock()
	if p.method != http.MethodPost || len(p.body) != 0 || p.header.Get("TTL") == "" {
		t.Errorf("wake-up %s with %d body bytes, TTL %q: want an empty RFC 8030 POST", p.method, len(p.body), p.header.Get("TTL"))
	}
	for k, vs := range p.header {
		for _, v := range vs {
			for _, secret := range []string{mc.circle, mc.nodes["alice"].n.ID().String(), b.n.ID().String(), "alice", "wake up"} {
				if strings.Contains(v, secret) {
					t.Errorf("wake-up header %s: %q names %q", k, v, secret)
				}
			}
		}
	}
	// The distributor wakes the app: bob's daemon runs and connects.
	b = mc.start("bob")
	testenv.WaitFor(t, "bob getting both messages from carol", 60*time.Second, func() bool {
		got := texts(inbox(t, b.n))
		return got["wake up"] == 1 && got["and again"] == 1
	})
	st, _ := c.n.Status(context.Background())
	if st.Mailbox.WakeRegistered != 1 || st.Mailbox.WakePushed != 1 {
		t.Errorf("carol's doctor: %+v, want 1 registered device and 1 push", st.Mailbox)
	}
}

// TestMailboxDefault: a device that may relay keeps a modest mailbox for
// its friends unless told otherwise; one that does not relay keeps none.
func TestMailboxDefault(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p nodes")
	}
	for _, tc := range []struct {
		name  string
		tune  func(*Options)
		quota int64
	}{
		{"relaying", func(o *Options) { o.Relay = &transport.RelayOptions{} }, DefaultMailboxQuota},
		{"relaying, turned off", func(o *Options) { o.Relay, o.Mailbox.Quota = &transport.RelayOptions{}, -1 }, 0},
		{"not relaying", func(o *Options) {}, 0},
		{"not relaying, turned on", func(o *Options) { o.Mailbox.Quota = 1 << 20 }, 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := startDirNodesTuned(t, t.TempDir(), tc.tune, "alice")[0]
			st, _ := n.n.Status(context.Background())
			if st.Mailbox.Quota != tc.quota || st.Mailbox.Offered != (tc.quota > 0) {
				t.Fatalf("mailbox %+v, want quota %d", st.Mailbox, tc.quota)
			}
		})
	}
}

// TestOutboxPersistWhileDepositsReleased: persisting an outbox entry reads
// a copy of its deposits, while an ack's release filters the entry's own
// in place under n.mu. Before the copy (snapshot shared the deposits'
// array), -race reported the two within a few rounds.
func TestOutboxPersistWhileDepositsReleased(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a libp2p node")
	}
	a := startIdleDirNode(t, nil)
	to, holder := peer.ID("recipient"), peer.ID("holder")
	for i := range 50 {
		e := &OutboxEntry{ID: envelope.MessageID{0xde, byte(i)}, Kind: envelope.KindChat, Pending: []peer.ID{to, "other"}}
		for j := range 8 {
			e.Deposits = append(e.Deposits, Deposit{To: []peer.ID{to, "other"}[j%2], Holder: holder, ID: mailbox.ID{byte(j)}, Size: j})
		}
		var wg sync.WaitGroup
		wg.Go(func() { a.n.releaseDeposits(e, to) })
		wg.Go(func() {
			if _, err := a.n.snapshot(e).item(); err != nil {
				t.Error(err)
			}
		})
		wg.Wait()
		a.n.mu.Lock()
		left := len(e.Deposits)
		a.n.mu.Unlock()
		if left != 4 {
			t.Fatalf("%d deposits left after releasing the recipient's, want 4", left)
		}
	}
}
