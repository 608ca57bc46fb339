package imap

import (
	"path/filepath"
	"testing"

	"github.com/remora-p2p/remora/core/node/nodetest"
)

// TestWakeUp: a sleeping member is woken through its mail account (IMAP
// IDLE on the real Dovecot, the post through the mlmmj list) by a friend
// that keeps its mail; see nodetest.WakeUp.
func TestWakeUp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three libp2p nodes")
	}
	env := needMail(t)
	root := t.TempDir()
	var nodes []*nodetest.Node
	for _, u := range []string{"alice", "bob", "carol"} {
		env.empty(t, u, "INBOX")
		n := listNode(t, env, "circle@example.test", u, filepath.Join(root, u))
		n.Start()
		defer n.Stop()
		nodes = append(nodes, n)
	}
	nodetest.WakeUp(t, nodes[0], nodes[1], nodes[2], nodetest.Circle(t, nodes[0], nodes[1], nodes[2]))
}
