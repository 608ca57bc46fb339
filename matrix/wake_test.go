package matrix

import (
	"testing"

	"github.com/remora-p2p/remora/core/node/nodetest"
)

// TestWakeUp: a sleeping member is woken through the circle's Matrix room
// (the real Dendrite, /sync long polls) by a friend that keeps its mail;
// see nodetest.WakeUp.
func TestWakeUp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two libp2p nodes")
	}
	a, b, circleID := circleOverMatrix(t)
	defer a.Stop()
	defer b.Stop()
	nodetest.WakeUp(t, a, b, circleID)
}
