package git_test

import (
	"testing"
	"time"

	"github.com/remora-p2p/remora/git"
	"github.com/remora-p2p/remora/sdk/channeltest"
)

// TestConformance runs the sdk conformance kit against a fresh bare
// repository per case, over file:// (in-process go-git server), git daemon
// with receive-pack behind a faultproxy, and ssh (openssh on 127.0.0.1).
func TestConformance(t *testing.T) {
	remotes := []struct {
		name string
		mk   func(testing.TB) remote
		opts []channeltest.Option
	}{
		{"file", fileRemote, nil},
		// behind a faultproxy (transparent until a case takes the server
		// away, stalls or trickles it), so the outage cases run too
		{"daemon", proxied(daemonRemote), nil},
		// each ssh connection costs ~0.7 s here: fewer items, more time
		{"ssh", sshRemote, []channeltest.Option{channeltest.Items(8), channeltest.Timeout(4 * time.Minute)}},
	}
	for _, r := range remotes {
		t.Run(r.name, func(t *testing.T) {
			mk := newHarness(r.mk)
			opts := append([]channeltest.Option{channeltest.HoldsOneItem("go-git's pack parser inflates each fetched object whole to index it (bounded by max_fetch_bytes; docs/threat-model.md)")}, r.opts...)
			channeltest.Run(t, git.New(), func(t *testing.T) channeltest.Harness { return mk(t) }, opts...)
		})
	}
}
