package node

import (
	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/core/circle"
)

// rotatePrekeys rotates this device's box prekey when it expires and
// publishes the current one in every circle whose roster still holds an
// older one (a prekey roster operation, signed by this device), so members
// seal direct envelopes to a key whose private half still exists. The
// maintenance loop runs it at start and every minute.
func (n *Node) rotatePrekeys() {
	if _, err := n.opts.Keyring.Rotate(); err != nil {
		n.log.Warn("prekey rotation", "err", err)
	}
	for _, c := range n.allCircles() {
		if !c.Roster().IsMember(n.ID()) {
			continue
		}
		before := c.Epoch()
		u, err := c.PublishPrekey()
		if err != nil {
			n.log.Warn("publish prekey", "circle", c.ID(), "err", err)
			continue
		}
		if u == nil {
			continue
		}
		if err := n.saveCircle(c); err != nil {
			n.log.Error("save circle", "err", err)
			continue
		}
		n.log.Info("published the rotated box prekey", "circle", c.ID(), "key_id", n.opts.Keyring.Current().ID().String())
		n.afterUpdate(c, u, before)
	}
}

// rosterHealth is the roster part of a circle's status, for doctor.
func rosterHealth(c *circle.Circle) *api.RosterHealth {
	h := c.Health()
	return &api.RosterHealth{Ops: h.Ops, Waiting: h.Waiting, OldestWaiting: h.OldestWaiting, Member: h.Member,
		PrekeyCreated: h.Prekey, PrekeyCurrent: h.PrekeyCurrent, KeyCreated: h.KeyCreated}
}
