// Package hostilehttp is an HTTP front for adapter tests that plays a
// hostile or broken server in front of a real one: it passes every request
// on (websockets included) until told to answer chosen paths with a body
// that never ends, or a websocket message that never ends. What a real
// homeserver or instance cannot be made to send, the adapter meets here;
// the front counts how much each hostile answer got out before the adapter
// hung up, which is what bounds the adapter's memory.
package hostilehttp

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gorilla/websocket"
)

// Endless is the most one hostile answer sends (1 GiB): far beyond any
// adapter's limit, and finite so that a test without a limit ends.
const Endless = 1 << 30

// Front is the hostile front. Configure the adapter with URL in place of
// the real server's.
type Front struct {
	*httptest.Server
	mu       sync.Mutex
	prefixes []string     // paths answered endlessly; nil: pass everything on
	sent     atomic.Int64 // the most bytes one hostile answer got out
	answers  atomic.Int64
}

// New starts a front passing requests to target (a base URL); it closes
// with the test.
func New(t testing.TB, target string) *Front {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	f := &Front{}
	proxy := httputil.NewSingleHostReverseProxy(u)
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !f.hostile(r.URL.Path) {
			proxy.ServeHTTP(w, r)
			return
		}
		f.answer(w, r)
	}))
	t.Cleanup(f.Server.Close)
	return f
}

// Endless makes the front answer every request whose path starts with one
// of prefixes with a never-ending body (status 200, JSON-looking, no
// Content-Length); a websocket upgrade on those paths gets one message
// that never ends. With no prefixes the front passes everything on again.
func (f *Front) Endless(prefixes ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.prefixes = prefixes
}

func (f *Front) hostile(path string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.prefixes {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

// Answers is the number of hostile answers begun; MaxSent the most bytes
// one of them got out before the adapter hung up (or Endless).
func (f *Front) Answers() int64 { return f.answers.Load() }
func (f *Front) MaxSent() int64 { return f.sent.Load() }

var chunk = []byte(strings.Repeat(`{"id":"1","type":"m.room.message","content":{}},`, 512))

func (f *Front) answer(w http.ResponseWriter, r *http.Request) {
	f.answers.Add(1)
	var n int64
	defer func() {
		for old := f.sent.Load(); n > old && !f.sent.CompareAndSwap(old, n); old = f.sent.Load() {
		}
	}()
	write := func(wr func([]byte) (int, error)) {
		for n < Endless {
			k, err := wr(chunk)
			n += int64(k)
			if err != nil {
				return
			}
		}
	}
	if websocket.IsWebSocketUpgrade(r) {
		up := websocket.Upgrader{Subprotocols: websocket.Subprotocols(r), CheckOrigin: func(*http.Request) bool { return true }}
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		wr, err := conn.NextWriter(websocket.TextMessage)
		if err != nil {
			return
		}
		write(wr.Write)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(`{"next_batch":"x","chunk":[`))
	write(w.Write)
}
