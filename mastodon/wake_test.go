package mastodon_test

import (
	"path/filepath"
	"slices"
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
		t.Skip("starts three libp2p nodes")
	}
	three := func(t *testing.T, server string, tokens, names []string, cfg map[string]any) {
		root := t.TempDir()
		var nodes []*nodetest.Node
		for i, name := range names {
			others := slices.Delete(slices.Clone(names), i, i+1)
			n := accountNode(t, []string{"alice", "bob", "carol"}[i], filepath.Join(root, name), server, tokens[i], others, cfg)
			n.Start()
			defer n.Stop()
			nodes = append(nodes, n)
		}
		nodetest.WakeUp(t, nodes[0], nodes[1], nodes[2], nodetest.Circle(t, nodes[0], nodes[1], nodes[2]))
	}
	t.Run("gotosocial", func(t *testing.T) {
		srv := gotosocial.Need(t)
		accts := srv.NewAccounts(t, "alice", "bob", "carol")
		var tokens, names []string
		for _, a := range accts {
			tokens, names = append(tokens, a.Token), append(names, a.Username)
		}
		three(t, srv.URL, tokens, names, nil)
	})
	t.Run("mastodon", func(t *testing.T) {
		srv := mastodontest.New(mastodontest.Options{})
		t.Cleanup(srv.Close)
		var tokens []string
		for _, name := range []string{"alice", "bob", "carol"} {
			tokens = append(tokens, srv.AddAccount(name).Token)
		}
		three(t, srv.URL, tokens, []string{"alice", "bob", "carol"}, map[string]any{"poll_interval": "1s"})
	})
}
