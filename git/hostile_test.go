package git_test

import (
	"crypto/rand"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/remora-p2p/remora/git"
	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/channeltest"
	"github.com/remora-p2p/remora/testenv"
)

// heapPeak samples the live heap (this process: the adapter runs in it;
// as marked by the last collection, so garbage does not count) every 5 ms
// until stop is called, and returns the peak above the figure at the
// start.
func heapPeak() (stop func() uint64) {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	read := func() uint64 { metrics.Read(s); return s[0].Value.Uint64() }
	base := read()
	var peak atomic.Uint64
	done := make(chan struct{})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			if v := read(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-ended
		if p := peak.Load(); p > base {
			return p - base
		}
		return 0
	}
}

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

	stop := heapPeak()
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
