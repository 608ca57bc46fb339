package mastodon

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/remora-p2p/remora/mastodon/mastodontest"
	"github.com/remora-p2p/remora/sdk"
)

func openInternal(t *testing.T, srv *mastodontest.Server, token string, dir ...string) *channel {
	t.Helper()
	cfg, _ := json.Marshal(map[string]any{"server": srv.URL, "accounts": []string{"bob"}})
	state := t.TempDir()
	if len(dir) > 0 {
		state = dir[0]
	}
	ch, err := New().Configure(t.Context(), sdk.ConfigureRequest{Config: cfg,
		Secrets: map[string]string{SecretToken: token}, StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ch.Close() })
	return ch.(*channel)
}

// TestIdempotency: the same key is one post within the server's hour (the
// Idempotency-Key header, also across a restart), and after it the adapter
// finds its earlier post among its own statuses instead of posting again.
func TestIdempotency(t *testing.T) {
	srv := mastodontest.New(mastodontest.Options{})
	t.Cleanup(srv.Close)
	alice := srv.AddAccount("alice")
	srv.AddAccount("bob")
	data := "rm1" + strings.Repeat("x", 100) + "."
	it := sdk.PublishItem{Data: []byte(data), IdempotencyKey: "key-1"}
	pub := func(c *channel, it sdk.PublishItem) string {
		t.Helper()
		resp, err := c.Publish(t.Context(), sdk.PublishRequest{Items: []sdk.PublishItem{it}})
		if err != nil || resp.Results[0].Err != nil {
			t.Fatalf("publish: %v %v", err, resp.Results)
		}
		return resp.Results[0].ID
	}
	c1 := openInternal(t, srv, alice.Token)
	id := pub(c1, it)
	if again := pub(c1, it); again != id || srv.Posts() != 1 {
		t.Fatalf("same process: id %s then %s, %d posts", id, again, srv.Posts())
	}
	c2 := openInternal(t, srv, alice.Token) // a restart: only the server knows the key
	if again := pub(c2, it); again != id || srv.Posts() != 1 {
		t.Fatalf("after restart: id %s then %s, %d posts", id, again, srv.Posts())
	}

	// Two hours later the server has forgotten the key. A device that
	// posted it finds the ID in its journal, across a restart, without
	// asking the server.
	srv.Advance(2 * time.Hour)
	c1.Close()
	dir := t.TempDir()
	cj := openInternal(t, srv, alice.Token, dir)
	keyed := sdk.PublishItem{Data: []byte("rm1" + strings.Repeat("z", 100) + "."), IdempotencyKey: "key-j"}
	idj := pub(cj, keyed)
	cj.Close()
	cj = openInternal(t, srv, alice.Token, dir)
	before := srv.Requests()
	if again := pub(cj, keyed); again != idj || srv.Requests() != before {
		t.Fatalf("journal across a restart: id %s then %s, %d requests", idj, again, srv.Requests()-before)
	}
	posts := srv.Posts()

	// A retry of an attempt that old whose answer was lost finds the post.
	c3 := openInternal(t, srv, alice.Token)
	c3.journal.set("key-1", attempt{first: time.Now().Add(-2 * time.Hour)})
	if again := pub(c3, it); again != id || srv.Posts() != posts {
		t.Fatalf("retry after the window: id %s then %s, %d posts", id, again, srv.Posts())
	}
	if h := c3.Health(t.Context()); h.Counters["retry_checks"] != 1 || h.Counters["retry_found"] != 1 {
		t.Errorf("counters %v", h.Counters)
	}
	// An old attempt that never reached the server is posted.
	other := sdk.PublishItem{Data: []byte("rm1" + strings.Repeat("y", 100) + "."), IdempotencyKey: "key-2"}
	c3.journal.set("key-2", attempt{first: time.Now().Add(-2 * time.Hour)})
	if id2 := pub(c3, other); id2 == id || srv.Posts() != posts+1 {
		t.Fatalf("old attempt never posted: id %s, %d posts", id2, srv.Posts())
	}
}

func TestCursorWindow(t *testing.T) {
	c, err := decodeCursor(nil, "7")
	if err != nil {
		t.Fatal(err)
	}
	if c.from() != "" {
		t.Fatalf("fresh cursor from %q", c.from())
	}
	// Notifications handled out of order (a late commit): from() is the
	// lowest ID in the window.
	c.add("105", "9005")
	c.add("103", "9003")
	c.add("110", "9010")
	if c.Max != "110" || c.from() != "103" {
		t.Fatalf("max %s from %s, want 110 and 103", c.Max, c.from())
	}
	if !c.seen("103", "") || !c.seen("999", "9005") || c.seen("104", "9004") {
		t.Error("seen() wrong")
	}
	for i := range 2 * window {
		c.add(strconv.Itoa(200+i), strconv.Itoa(9200+i))
	}
	if len(c.Recent) != window || c.from() != strconv.Itoa(200+window) {
		t.Fatalf("window %d from %s", len(c.Recent), c.from())
	}
	back, err := decodeCursor(c.encode(), "7")
	if err != nil || back.from() != c.from() || back.Max != c.Max {
		t.Fatalf("round trip: %v %+v", err, back)
	}
	if _, err := decodeCursor(c.encode(), "8"); err == nil {
		t.Error("a cursor of another account was accepted")
	}
	// GoToSocial's ULIDs order by bytes; Mastodon's numbers by length first.
	if !idLess("99", "100") || !idLess("01HQ0000000000000000000000", "01HQ0000000000000000000001") {
		t.Error("idLess")
	}
}

// FuzzCursor: a cursor from storage never panics the decoder, and one it
// accepts re-encodes to a cursor it accepts again with the same position.
func FuzzCursor(f *testing.F) {
	c := cursor{V: 1, Account: "7"}
	c.add("105", "9005")
	c.add("103", "9003")
	f.Add(c.encode())
	f.Add([]byte(`{"v":1,"a":"7","n":"01HQ0000000000000000000000","w":[["01HQ0000000000000000000000",""]]}`))
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`garbage`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeCursor(b, "7")
		if err != nil {
			return
		}
		back, err := decodeCursor(c.encode(), "7")
		if err != nil || back.from() != c.from() || back.Max != c.Max {
			t.Fatalf("re-encoded cursor: %v, from %q/%q", err, back.from(), c.from())
		}
	})
}

func TestJournalReplay(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	j, err := openJournal(dir, now, false)
	if err != nil {
		t.Fatal(err)
	}
	j.begin("a", now.Add(-48*time.Hour)) // expires on the next open
	j.begin("b", now.Add(-time.Minute))
	j.done("b", "111", now)
	j.begin("c", now)
	j.file.WriteString(`{"k":"d","t":"2026-`) // a torn line from a crash
	j.close()
	j, err = openJournal(dir, now, false)
	if err != nil {
		t.Fatal(err)
	}
	defer j.close()
	if _, ok := j.m["a"]; ok {
		t.Error("an entry older than a day survived")
	}
	if a := j.m["b"]; a.id != "111" || a.first.Sub(now.Add(-time.Minute)).Abs() > time.Millisecond {
		t.Errorf("b = %+v", a)
	}
	if a, ok := j.m["c"]; !ok || a.id != "" {
		t.Errorf("c = %+v, %v", a, ok)
	}
	if len(j.m) != 2 {
		t.Errorf("%d entries after replay, want 2", len(j.m))
	}
}
