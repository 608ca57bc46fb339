package matrix

import (
	"path/filepath"
	"testing"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/remora-p2p/remora/core/node/nodetest"
)

// TestWakeUp: a sleeping member is woken through the circle's Matrix room
// (the real Dendrite, /sync long polls) by a friend that keeps its mail;
// see nodetest.WakeUp.
func TestWakeUp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three libp2p nodes")
	}
	hs := needHomeserver(t)
	ua, ub, uc := hs.register(t), hs.register(t), hs.register(t)
	room := createRoom(t, ua, []user{ub, uc}, &event.PowerLevelsEventContent{
		Users:  map[id.UserID]int{ua.id: 100},
		Events: map[string]int{boardEvents: 0},
	})
	root := t.TempDir()
	var nodes []*nodetest.Node
	for i, u := range []user{ua, ub, uc} {
		name := []string{"alice", "bob", "carol"}[i]
		n := roomNode(t, name, filepath.Join(root, name), hs, u, room)
		n.Start()
		defer n.Stop()
		nodes = append(nodes, n)
	}
	nodetest.WakeUp(t, nodes[0], nodes[1], nodes[2], nodetest.Circle(t, nodes[0], nodes[1], nodes[2]))
}
