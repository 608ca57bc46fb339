package mastodon_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/remora-p2p/remora/mastodon/mastodontest"
	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/testenv"
)

// TestBadInput: strangers' posts, ordinary mentions, garbage, deleted
// statuses and a dropped stream are skipped and counted; the subscription
// resumes from its cursor and loses nothing.
func TestBadInput(t *testing.T) {
	srv := mastodontest.New(mastodontest.Options{})
	t.Cleanup(srv.Close)
	alice, bob := srv.AddAccount("alice"), srv.AddAccount("bob")
	srv.AddAccount("dave")
	pub := mustConfigure(t, srv, alice.Token, map[string]any{"accounts": []string{"bob"}})
	sub := mustConfigure(t, srv, bob.Token, map[string]any{"accounts": []string{"alice"}})

	a := armored(150)
	if res := publish(t, pub, item(a)); res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	must := func(_ string, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(srv.Post("dave", "@bob "+armored(150), "direct"))                                     // a stranger, armor and all
	srv.Federate("eve@far.example", "@bob@social.example "+armored(150), "direct", time.Now()) // a remote stranger
	must(srv.Post("alice", "@bob lunch tomorrow?", "direct"))                                  // an ordinary mention
	must(srv.Post("alice", "@bob rm1!!garbage!!not-armor.", "direct"))                         // garbage
	must(srv.Post("alice", "good morning everyone", "public"))                                 // no mention: no notification
	deleted := armored(150)
	res := publish(t, pub, item(deleted))
	srv.DeleteStatus(res[0].ID) // deleted before anyone read it

	r := subscribe(t, sub, nil)
	testenv.WaitFor(t, "the item", 10*time.Second, func() bool { got, _, _ := r.counts(); return got[a] == 1 })
	// The skipped posts come after the item: wait until they are counted.
	want := map[string]int64{"ignored_stranger": 2, "ignored_plain": 2}
	counted := func() bool {
		h := health(sub)
		for k, n := range want {
			if h.Counters[k] < n {
				return false
			}
		}
		return true
	}
	testenv.WaitFor(t, "the stranger's and plain posts counted", 10*time.Second, counted)
	h := health(sub)
	for k, n := range want {
		if h.Counters[k] != n {
			t.Errorf("counter %s = %d, want %d (%v)", k, h.Counters[k], n, h.Counters)
		}
	}

	// The stream drops; the server's streaming stays down for a while.
	testenv.WaitFor(t, "the stream", 5*time.Second, func() bool { return srv.Streams() == 1 })
	c := armored(150)
	cID := publish(t, pub, item(c))[0].ID
	testenv.WaitFor(t, "c", 10*time.Second, func() bool { got, _, _ := r.counts(); return got[c] == 1 })
	// Its author deletes it once consumed: the stream's delete event is
	// counted, nothing else happens.
	if resp, err := pub.(sdk.Deleter).Delete(t.Context(), sdk.DeleteRequest{IDs: []string{cID}}); err != nil || resp.Errors[0] != nil {
		t.Fatalf("delete: %v %v", err, resp.Errors)
	}
	testenv.WaitFor(t, "the delete event", 5*time.Second, func() bool { return health(sub).Counters["deleted_seen"] >= 1 })
	srv.SetStreaming(false)
	d := armored(150)
	publish(t, pub, item(d))
	testenv.WaitFor(t, "d, by polling", 10*time.Second, func() bool { got, _, _ := r.counts(); return got[d] == 1 })
	h = health(sub)
	if h.Counters["stream_drops"] < 1 || h.Counters["polls"] < 1 {
		t.Errorf("counters after the drop: %v", h.Counters)
	}
	r.stop(t)
	got, _, cursor := r.counts()
	if got[deleted] != 0 {
		t.Error("the deleted status was delivered")
	}
	for k, n := range got {
		if n != 1 {
			t.Errorf("item %.12s… delivered %d times", k, n)
		}
	}
	if len(got) != 3 {
		t.Errorf("delivered %d items, want 3 (a, c, d)", len(got))
	}

	// Resume from the cursor with streaming back: only what is new arrives.
	srv.SetStreaming(true)
	e := armored(150)
	publish(t, pub, item(e))
	r2 := subscribe(t, sub, cursor)
	testenv.WaitFor(t, "e", 10*time.Second, func() bool { got, _, _ := r2.counts(); return got[e] == 1 })
	time.Sleep(300 * time.Millisecond)
	got2, _, _ := r2.counts()
	if len(got2) != 1 {
		t.Errorf("resumed subscription delivered %d items, want only e", len(got2))
	}
}

func TestStreamingUnavailableFromStart(t *testing.T) {
	srv := mastodontest.New(mastodontest.Options{})
	t.Cleanup(srv.Close)
	alice, bob := srv.AddAccount("alice"), srv.AddAccount("bob")
	srv.SetStreaming(false)
	pub := mustConfigure(t, srv, alice.Token, map[string]any{"accounts": []string{"bob"}})
	sub := mustConfigure(t, srv, bob.Token, map[string]any{"accounts": []string{"alice"}})
	r := subscribe(t, sub, nil)
	x := armored(100)
	publish(t, pub, item(x))
	testenv.WaitFor(t, "x by polling", 10*time.Second, func() bool { got, _, _ := r.counts(); return got[x] == 1 })
	if h := health(sub); h.Counters["stream_connects"] != 0 || h.Counters["polls"] < 1 || h.State != sdk.HealthDegraded || !strings.Contains(h.Message, "polling") {
		t.Errorf("health: %s %q %v", h.State, h.Message, h.Counters)
	}
}

// TestStreamingAdvertisedURLFails: the instance advertises a streaming URL
// that does not answer (a proxy that lost its route; GoToSocial's
// wss://HOST on a plain-http server is the same-host case, TestStreamBases);
// the adapter falls back to the server's own URL and streams, instead of
// degrading to polling.
func TestStreamingAdvertisedURLFails(t *testing.T) {
	srv := mastodontest.New(mastodontest.Options{StreamingURL: "ws://localhost:1"})
	t.Cleanup(srv.Close)
	alice, bob := srv.AddAccount("alice"), srv.AddAccount("bob")
	pub := mustConfigure(t, srv, alice.Token, map[string]any{"accounts": []string{"bob"}})
	sub := mustConfigure(t, srv, bob.Token, map[string]any{"accounts": []string{"alice"}, "poll_interval": "1h"})
	r := subscribe(t, sub, nil)
	testenv.WaitFor(t, "the stream", 10*time.Second, func() bool { return srv.Streams() == 1 })
	x := armored(100)
	publish(t, pub, item(x))
	testenv.WaitFor(t, "x over the stream", 10*time.Second, func() bool { got, _, _ := r.counts(); return got[x] == 1 })
	if h := health(sub); h.Counters["stream_connects"] != 1 || h.State != sdk.HealthOK {
		t.Errorf("health: %s %q %v", h.State, h.Message, h.Counters)
	}
}

func TestCursorOtherAccount(t *testing.T) {
	srv := mastodontest.New(mastodontest.Options{})
	t.Cleanup(srv.Close)
	alice, bob, carol := srv.AddAccount("alice"), srv.AddAccount("bob"), srv.AddAccount("carol")
	pub := mustConfigure(t, srv, alice.Token, map[string]any{"accounts": []string{"bob"}})
	sub := mustConfigure(t, srv, bob.Token, map[string]any{"accounts": []string{"alice"}})
	publish(t, pub, item(armored(100)))
	r := subscribe(t, sub, nil)
	testenv.WaitFor(t, "a delivery", 10*time.Second, func() bool { got, _, _ := r.counts(); return len(got) == 1 })
	r.stop(t)
	_, _, cursor := r.counts()
	other := mustConfigure(t, srv, carol.Token, map[string]any{"accounts": []string{"alice"}})
	for name, c := range map[string][]byte{"other account": cursor, "garbage": []byte("garbage"), "bad id": bytes.Replace(cursor, []byte(`"n":"`), []byte(`"n":"../`), 1)} {
		err := other.Subscribe(t.Context(), sdk.SubscribeRequest{Cursor: c}, sdk.SinkFunc(nil))
		if !errors.Is(err, sdk.ErrCursorInvalid) {
			t.Errorf("%s: got %v, want cursor invalid", name, err)
		}
	}
}

// TestRateLimit: the adapter stops before the server's 429 and says when
// to retry, counting its requests against the general limit itself since
// post responses report the statuses limit instead; a 429 it could not
// foresee (another client on the same token) is sdk.RateLimited too;
// after the reset publishing works again.
func TestRateLimit(t *testing.T) {
	// Windows are aligned to the clock, as Mastodon's are; an attempt that
	// straddles a window boundary (a loaded machine) is run again.
	const window = 4 * time.Second
	for attempt := 1; ; attempt++ {
		if rateLimitOnce(t, window) || attempt == 3 {
			return
		}
		t.Logf("attempt %d straddled a rate-limit window; again", attempt)
	}
}

// rateLimitOnce runs the case in one window; false if it did not fit.
func rateLimitOnce(t *testing.T, window time.Duration) bool {
	srv := mastodontest.New(mastodontest.Options{RateLimit: 12, RateWindow: window})
	defer srv.Close()
	alice := srv.AddAccount("alice")
	srv.AddAccount("bob")
	time.Sleep(time.Until(time.Now().Truncate(window).Add(window)))
	start := time.Now()
	pub := mustConfigure(t, srv, alice.Token, map[string]any{"accounts": []string{"bob"}})
	var items []sdk.PublishItem
	for range 15 {
		items = append(items, item(armored(100)))
	}
	res := publish(t, pub, items...)
	// Another client spends the rest; a new channel learns of it from a 429.
	for range 3 {
		mastodontest.Spend(t, srv, alice.Token)
	}
	_, err := configure(t, srv, alice.Token, map[string]any{"accounts": []string{"bob"}})
	if time.Now().Truncate(window) != start.Truncate(window) {
		return false
	}
	ok, limited := 0, 0
	for _, r := range res {
		switch {
		case r.Err == nil:
			ok++
		case errors.Is(r.Err, sdk.ErrRateLimited):
			limited++
			if ra := sdk.RetryAfterOf(r.Err); ra <= 0 || ra > window {
				t.Errorf("retry after %s, want within the %s window", ra, window)
			}
		default:
			t.Errorf("unexpected error %v", r.Err)
		}
	}
	// 12 requests: 2 for Configure (verify_credentials, instance), 3 kept
	// for reads, 7 posts; the server never had to answer 429.
	if ok != 7 || limited != 8 {
		t.Errorf("%d published, %d rate limited; want 7 and 8", ok, limited)
	}
	if !errors.Is(err, sdk.ErrRateLimited) || sdk.RetryAfterOf(err) <= 0 {
		t.Errorf("configure on a spent budget: got %v (retry after %s), want rate limited", err, sdk.RetryAfterOf(err))
	}
	if n := srv.Limited(); n != 1 {
		t.Errorf("the server answered 429 %d times, want 1 (the new channel's first request)", n)
	}
	time.Sleep(time.Until(time.Now().Truncate(window).Add(window)) + 50*time.Millisecond)
	if res := publish(t, pub, item(armored(100))); res[0].Err != nil {
		t.Errorf("after the reset: %v", res[0].Err)
	}
	return true
}

// TestStatusLimit: Mastodon's second limit, 300 statuses per 3 hours,
// reported on post responses: the adapter stops at it without a 429 and
// says to come back at its reset.
func TestStatusLimit(t *testing.T) {
	srv := mastodontest.New(mastodontest.Options{StatusLimit: 5})
	t.Cleanup(srv.Close)
	alice := srv.AddAccount("alice")
	srv.AddAccount("bob")
	pub := mustConfigure(t, srv, alice.Token, map[string]any{"accounts": []string{"bob"}})
	if rl := pub.Capabilities().RateLimit; rl.Requests != 300 || rl.Per.D() != 3*time.Hour {
		t.Errorf("declared rate limit %+v, want 300 per 3h", rl)
	}
	var errs []error
	for range 7 {
		errs = append(errs, publish(t, pub, item(armored(100)))[0].Err)
	}
	for i, err := range errs {
		switch {
		case i < 5 && err != nil:
			t.Errorf("post %d: %v", i, err)
		case i >= 5 && (!errors.Is(err, sdk.ErrRateLimited) || sdk.RetryAfterOf(err) <= 0 || sdk.RetryAfterOf(err) > 3*time.Hour):
			t.Errorf("post %d: got %v (retry after %s), want rate limited until the 3-hour reset", i, err, sdk.RetryAfterOf(err))
		}
	}
	if srv.Limited() != 0 || srv.Posts() != 5 {
		t.Errorf("server: %d posts, %d 429s; want 5 and 0", srv.Posts(), srv.Limited())
	}
	ch := mustConfigure(t, srv, alice.Token, map[string]any{"accounts": []string{"bob"}, "rate_limit": map[string]any{"requests": 1000, "per": "5m"}})
	if rl := ch.Capabilities().RateLimit; rl.Requests != 1000 || rl.Per.D() != 5*time.Minute {
		t.Errorf("rate_limit override: %+v", rl)
	}
}

// TestDeleteLimit: Mastodon allows 30 deletes per 30 minutes and says so
// only on the 429; the adapter returns RateLimited for that ID and the
// rest of the window, without asking again.
func TestDeleteLimit(t *testing.T) {
	srv := mastodontest.New(mastodontest.Options{DeleteLimit: 3})
	t.Cleanup(srv.Close)
	alice := srv.AddAccount("alice")
	srv.AddAccount("bob")
	pub := mustConfigure(t, srv, alice.Token, map[string]any{"accounts": []string{"bob"}})
	var ids []string
	for range 5 {
		ids = append(ids, publish(t, pub, item(armored(100)))[0].ID)
	}
	resp, err := pub.(sdk.Deleter).Delete(t.Context(), sdk.DeleteRequest{IDs: ids})
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range resp.Errors {
		switch {
		case i < 3 && err != nil:
			t.Errorf("delete %d: %v", i, err)
		case i >= 3 && (!errors.Is(err, sdk.ErrRateLimited) || sdk.RetryAfterOf(err) <= 0 || sdk.RetryAfterOf(err) > 30*time.Minute):
			t.Errorf("delete %d: got %v, want rate limited until the reset", i, err)
		}
	}
	if n := srv.Limited(); n != 1 {
		t.Errorf("server answered 429 %d times, want 1 (then the adapter waits)", n)
	}
	// Other requests are not held back by the delete throttle.
	if res := publish(t, pub, item(armored(100))); res[0].Err != nil {
		t.Errorf("publish after the delete limit: %v", res[0].Err)
	}
}
