package mastodon_test

import (
	"testing"

	"github.com/remora-p2p/remora/core/node/nodetest"
	"github.com/remora-p2p/remora/mastodon/mastodontest"
	"github.com/remora-p2p/remora/testenv/gotosocial"
)

// TestWakeUp: a sleeping member is woken through its Mastodon account (the
// streaming API: the real GoToSocial, and the fake Mastodon) by a friend
// that keeps its mail; see nodetest.WakeUp.
func TestWakeUp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two libp2p nodes")
	}
	t.Run("gotosocial", func(t *testing.T) {
		srv := gotosocial.Need(t)
		accts := srv.NewAccounts(t, "alice", "bob")
		a, b, circleID := circleOverGoToSocial(t, srv, accts[0], accts[1])
		defer a.Stop()
		defer b.Stop()
		nodetest.WakeUp(t, a, b, circleID)
	})
	t.Run("mastodon", func(t *testing.T) {
		_, a, b, circleID := circleOverMastodon(t, mastodontest.Options{})
		defer a.Stop()
		defer b.Stop()
		nodetest.WakeUp(t, a, b, circleID)
	})
}
