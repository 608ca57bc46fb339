package mastodon_test

import (
	"strings"
	"testing"
	"time"

	"github.com/remora-p2p/remora/mastodon/mastodontest"
	"github.com/remora-p2p/remora/sdk/channeltest/hostilehttp"
	"github.com/remora-p2p/remora/testenv"
)

// TestHostileServer: a server whose answers never end (the notifications
// list, a streaming message) costs the adapter a bounded read each time:
// it hangs up past its limit (8 MiB for an answer, 1 MiB for a streaming
// message), says why in its health, and reads new items again once the
// server behaves.
func TestHostileServer(t *testing.T) {
	srv := mastodontest.New(mastodontest.Options{})
	t.Cleanup(srv.Close)
	alice, bob := srv.AddAccount("alice"), srv.AddAccount("bob")
	front := hostilehttp.New(t, srv.URL)
	pub := mustConfigure(t, srv, alice.Token, map[string]any{"accounts": []string{"bob"}})
	sub := mustConfigure(t, srv, bob.Token, map[string]any{"accounts": []string{"alice"}, "server": front.URL})

	r := subscribe(t, sub, nil)
	testenv.WaitFor(t, "the stream", 10*time.Second, func() bool { return srv.Streams() == 1 })
	front.Endless("/api/v1/notifications", "/api/v1/streaming")
	srv.DropStreams() // the reconnection meets the endless message
	testenv.WaitFor(t, "the endless answers refused", 60*time.Second, func() bool {
		h := health(sub)
		return front.Answers() >= 3 && strings.Contains(h.Message, "larger than the adapter accepts")
	})
	h := health(sub)
	t.Logf("hostile answers: %d, the longest got %d KiB out; health: %s", front.Answers(), front.MaxSent()>>10, h.Message)
	if s := front.MaxSent(); s > 32<<20 {
		t.Errorf("a hostile answer got %d MiB out before the adapter hung up, want about its limit (8 MiB) plus buffers", s>>20)
	}
	if h.Counters["stream_drops"] < 1 {
		t.Errorf("the endless streaming message did not end the stream: %v", h.Counters)
	}

	front.Endless()
	a := armored(150)
	if res := publish(t, pub, item(a)); res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	// The subscription backs off after failures (up to a few seconds here).
	testenv.WaitFor(t, "the item after the server behaves", 60*time.Second, func() bool { got, _, _ := r.counts(); return got[a] == 1 })
	r.stop(t)
}
