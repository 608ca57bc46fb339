package mastodon_test

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/remora-p2p/remora/mastodon/mastodontest"
	"github.com/remora-p2p/remora/testenv"
)

// hostileFront stands in front of the fake server, as a compromised or
// broken instance would: while endless is set, the notifications it
// serves never end, and the streaming API sends one message that never
// ends. Everything else is passed on.
type hostileFront struct {
	*httptest.Server
	endless atomic.Bool
	// sent is the most bytes one hostile answer got out before the
	// adapter hung up; answers counts them.
	sent, answers atomic.Int64
}

func newHostileFront(t *testing.T, target string) *hostileFront {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	h := &hostileFront{}
	proxy := httputil.NewSingleHostReverseProxy(u)
	up := websocket.Upgrader{Subprotocols: []string{}, CheckOrigin: func(*http.Request) bool { return true }}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !h.endless.Load() {
			proxy.ServeHTTP(w, r)
			return
		}
		chunk := []byte(strings.Repeat(`{"id":"1","type":"mention"},`, 1024))
		var n int64
		defer func() {
			h.answers.Add(1)
			for old := h.sent.Load(); n > old && !h.sent.CompareAndSwap(old, n); old = h.sent.Load() {
			}
		}()
		switch {
		case strings.HasPrefix(r.URL.Path, "/api/v1/notifications"):
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte("["))
			for n < 1<<30 {
				k, err := w.Write(chunk)
				n += int64(k)
				if err != nil {
					return
				}
			}
		case strings.HasPrefix(r.URL.Path, "/api/v1/streaming"):
			up.Subprotocols = websocket.Subprotocols(r)
			conn, err := up.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer conn.Close()
			wr, err := conn.NextWriter(websocket.TextMessage)
			if err != nil {
				return
			}
			for n < 1<<30 {
				k, err := wr.Write(chunk)
				n += int64(k)
				if err != nil {
					return
				}
			}
		default:
			proxy.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(h.Server.Close)
	return h
}

// TestHostileServer: a server whose answers never end (the notifications
// list, a streaming message) costs the adapter a bounded read each time:
// it hangs up past its limit (8 MiB for an answer, 1 MiB for a streaming
// message), says why in its health, and reads new items again once the
// server behaves.
func TestHostileServer(t *testing.T) {
	srv := mastodontest.New(mastodontest.Options{})
	t.Cleanup(srv.Close)
	alice, bob := srv.AddAccount("alice"), srv.AddAccount("bob")
	front := newHostileFront(t, srv.URL)
	pub := mustConfigure(t, srv, alice.Token, map[string]any{"accounts": []string{"bob"}})
	sub := mustConfigure(t, srv, bob.Token, map[string]any{"accounts": []string{"alice"}, "server": front.URL})

	r := subscribe(t, sub, nil)
	testenv.WaitFor(t, "the stream", 10*time.Second, func() bool { return srv.Streams() == 1 })
	front.endless.Store(true)
	srv.DropStreams() // the reconnection meets the endless message
	testenv.WaitFor(t, "the endless answers refused", 60*time.Second, func() bool {
		h := health(sub)
		return front.answers.Load() >= 3 && strings.Contains(h.Message, "larger than the adapter accepts")
	})
	h := health(sub)
	t.Logf("hostile answers: %d, the longest got %d KiB out; health: %s", front.answers.Load(), front.sent.Load()>>10, h.Message)
	if s := front.sent.Load(); s > 32<<20 {
		t.Errorf("a hostile answer got %d MiB out before the adapter hung up, want about its limit (8 MiB) plus buffers", s>>20)
	}
	if h.Counters["stream_drops"] < 1 {
		t.Errorf("the endless streaming message did not end the stream: %v", h.Counters)
	}

	front.endless.Store(false)
	a := armored(150)
	if res := publish(t, pub, item(a)); res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	// The subscription backs off after failures (up to a few seconds here).
	testenv.WaitFor(t, "the item after the server behaves", 60*time.Second, func() bool { got, _, _ := r.counts(); return got[a] == 1 })
	r.stop(t)
}
