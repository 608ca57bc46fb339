package git_test

import (
	"crypto/rand"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/remora-p2p/remora/git"
	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/channeltest"
	"github.com/remora-p2p/remora/sdk/channeltest/faultproxy"
	"github.com/remora-p2p/remora/testenv"
)

// TestHugeBlob: a member with push access (or the forge) puts a 64 MiB
// blob where an item goes. The subscriber's fetch refuses the pack past
// max_fetch_bytes (16 MiB here; go-git would read the blob whole to index it), fetches
// the member refs one by one, leaves out the one that holds the blob and
// says so, and delivers the other member's items; its heap grows by far
// less than the blob. Once the ref moves on without the blob, it is
// fetched again.
func TestHugeBlob(t *testing.T) {
	r := daemonRemote(t)
	limit := map[string]any{"max_fetch_bytes": 16 << 20}
	pub := open(t, r, 0, t.TempDir(), limit)
	sub := open(t, r, 1, t.TempDir(), limit)
	huge := make([]byte, 64<<20)
	rand.Read(huge)
	bucket := time.Now().UTC().Format("2006010215")
	commitFiles(t, r.bare, git.DefaultNamespace+"m9", map[string][]byte{"log/" + bucket + "/huge-" + uniq(): huge}, false, time.Time{})
	huge = nil
	it := items("after-huge", 1)
	channeltest.Publish(t, pub, it...)

	stop := channeltest.HeapGrowth()
	c, _, cancel := subscribe(t, sub, nil)
	testenv.WaitFor(t, "the item", time.Minute, func() bool { return c.has(string(it[0].Data)) })
	testenv.WaitFor(t, "the ref with the blob left out", time.Minute, func() bool {
		return sub.(sdk.Healther).Health(t.Context()).Counters["refused_refs"] >= 1
	})
	grew := stop()
	h := sub.(sdk.Healther).Health(t.Context())
	t.Logf("heap grew by %d MiB at most with a 64 MiB blob on a member ref; health: %s %v", grew>>20, h.Message, h.Counters)
	if grew > 32<<20 {
		t.Errorf("the heap grew by %d MiB, want far less than the blob (64 MiB)", grew>>20)
	}
	if h.Counters["refused_refs"] != 1 || !strings.Contains(h.Message, git.DefaultNamespace+"m9") {
		t.Errorf("health %+v: want the ref with the blob named and counted", h)
	}

	// The ref is made again without the blob: fetched and read again.
	gitCLI(t, "", "--git-dir="+r.bare, "update-ref", "-d", git.DefaultNamespace+"m9")
	fixed := items("fixed", 1)
	commitFiles(t, r.bare, git.DefaultNamespace+"m9", map[string][]byte{"log/" + bucket + "/fixed-" + uniq(): fixed[0].Data}, false, time.Time{})
	testenv.WaitFor(t, "the item on the fixed ref", time.Minute, func() bool { return c.has(string(fixed[0].Data)) })
	if n := sub.(sdk.Healther).Health(t.Context()).Counters["refused_refs"]; n != 0 {
		t.Errorf("refused_refs %d after the ref was fixed, want 0", n)
	}
	cancel()
}

// TestStalledRemote: git daemon behind a proxy that stalls, then
// trickles: each fetch ends at the channel's timeout with the reason in
// health instead of hanging the subscription; once the server is back
// the item published meanwhile arrives; Close returns promptly while the
// server is stalled.
func TestStalledRemote(t *testing.T) {
	r := daemonRemote(t)
	u, err := url.Parse(r.url)
	if err != nil {
		t.Fatal(err)
	}
	px, err := faultproxy.New(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { px.Close() })
	pub := open(t, r, 0, t.TempDir(), nil)
	viaProxy := r
	viaProxy.url = strings.Replace(r.url, u.Host, px.Addr(), 1)
	sub := open(t, viaProxy, 1, t.TempDir(), map[string]any{"timeout": "2s"})
	health := func() string { return sub.(sdk.Healther).Health(t.Context()).Message }

	first := items("first", 1)
	channeltest.Publish(t, pub, first...)
	c, done, cancel := subscribe(t, sub, nil)
	defer cancel()
	testenv.WaitFor(t, "the first item", time.Minute, func() bool { return c.has(string(first[0].Data)) })

	for _, fault := range []struct {
		name  string
		apply func()
	}{
		{"stall", px.Stall},
		{"trickle", func() { px.Trickle(1, 200*time.Millisecond) }},
	} {
		fault.apply()
		it := items(fault.name, 1)
		channeltest.Publish(t, pub, it...)
		testenv.WaitFor(t, "the "+fault.name+" reported", time.Minute, func() bool {
			return strings.Contains(health(), "did not answer in time")
		})
		t.Logf("%s: %s", fault.name, health())
		px.Up()
		testenv.WaitFor(t, "the item published during the "+fault.name, time.Minute, func() bool { return c.has(string(it[0].Data)) })
		testenv.WaitFor(t, "the health clear", time.Minute, func() bool { return !strings.Contains(health(), "did not answer") })
	}

	px.Stall()
	time.Sleep(500 * time.Millisecond) // let a fetch start into the stall
	start := time.Now()
	sub.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Subscribe still running 5s after Close with the server stalled")
	}
	t.Logf("closed in %v with the server stalled", time.Since(start).Round(time.Millisecond))
	px.Up()
}
