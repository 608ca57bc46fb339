package git_test

import (
	"testing"
	"time"

	"github.com/remora-p2p/remora/git"
	"github.com/remora-p2p/remora/sdk/channeltest"
)

// TestConformance runs the sdk conformance kit against a fresh bare
// repository per case, over file:// (in-process go-git server), git daemon
// with receive-pack, and ssh (openssh on 127.0.0.1).
func TestConformance(t *testing.T) {
	remotes := []struct {
		name string
		mk   func(testing.TB) remote
		opts []channeltest.Option
	}{
		{"file", fileRemote, nil},
		{"daemon", daemonRemote, nil},
		// Behind a faultproxy for the outage cases. Known defects, open in
		// issue #20: through the proxy the fetch after an 8 MiB item is
		// reset (Oversized), and a fetch stalled by the proxy outlives
		// Close by more than the kit's 5 s (StallAndTrickle).
		{"daemon-proxied", proxied(daemonRemote), []channeltest.Option{
			channeltest.Skip("Oversized", "known defect behind the faultproxy (issue #20); run unproxied as daemon"),
			channeltest.Skip("StallAndTrickle", "known defect: a stalled fetch outlives Close by more than 5 s (issue #20)"),
		}},
		// each ssh connection costs ~0.7 s here: fewer items, more time
		{"ssh", sshRemote, []channeltest.Option{channeltest.Items(8), channeltest.Timeout(4 * time.Minute)}},
	}
	for _, r := range remotes {
		t.Run(r.name, func(t *testing.T) {
			mk := newHarness(r.mk)
			channeltest.Run(t, git.New(), func(t *testing.T) channeltest.Harness { return mk(t) }, r.opts...)
		})
	}
}
