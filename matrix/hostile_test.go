package matrix

import (
	"strings"
	"testing"
	"time"

	"github.com/remora-p2p/remora/sdk/channeltest"
	"github.com/remora-p2p/remora/sdk/channeltest/hostilehttp"
)

// TestHostileHomeserver: Dendrite behind a front that, for a while,
// answers /sync and /messages with a body that never ends. Each such
// answer costs the subscription a bounded read (16 MiB, then it hangs
// up); health says why; once the homeserver behaves, items published
// meanwhile and after arrive, each once.
func TestHostileHomeserver(t *testing.T) {
	hs := needHomeserver(t)
	alice, bob := hs.register(t), hs.register(t)
	room := createRoom(t, alice, []user{bob}, nil)
	front := hostilehttp.New(t, hs.url)
	a := hs.mustOpen(t, alice, room, t.TempDir())
	b := homeserver{url: front.URL, secret: hs.secret}.mustOpen(t, bob, room, t.TempDir())

	first := payloadN(30)
	channeltest.Publish(t, a, item(first))
	col, stop := subscribe(t, b, nil)
	seen := col.waitFor(t, wantSet(first), time.Minute)

	front.Endless("/_matrix/client/v3/sync", "/_matrix/client/v3/rooms/")
	during := payloadN(30)
	channeltest.Publish(t, a, item(during))
	deadline := time.Now().Add(2 * time.Minute)
	for !(front.Answers() >= 2 && strings.Contains(b.Health(ctxT(t, time.Minute)).Message, "larger than the adapter accepts")) {
		if time.Now().After(deadline) {
			t.Fatalf("endless answers not refused: %d answers, the longest %d KiB; health %+v", front.Answers(), front.MaxSent()>>10, b.Health(ctxT(t, time.Minute)))
		}
		time.Sleep(100 * time.Millisecond)
	}
	h := b.Health(ctxT(t, time.Minute))
	t.Logf("hostile answers: %d, the longest got %d KiB out; health: %.300s", front.Answers(), front.MaxSent()>>10, h.Message)
	if s := front.MaxSent(); s > 48<<20 {
		t.Errorf("a hostile answer got %d MiB out before the adapter hung up, want about its limit (16 MiB) plus buffers", s>>20)
	}

	front.Endless()
	after := payloadN(30)
	channeltest.Publish(t, a, item(after))
	more := col.waitFor(t, wantSet(during, after), 2*time.Minute)
	col.drain(time.Second, more)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for k, n := range more {
		seen[k] += n
	}
	for _, d := range [][]byte{first, during, after} {
		if seen[string(d)] != 1 {
			t.Errorf("item delivered %d times, want 1", seen[string(d)])
		}
	}
}
