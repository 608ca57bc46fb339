package node

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/remora-p2p/remora/core/presence"
	"github.com/remora-p2p/remora/core/transport"
)

// Birthday-paradox probing (core/birthday) for the pairs DCUtR cannot
// punch but physics allows: one side's NAT is symmetric, the other's maps
// endpoint-independently. The symmetric ("hard") side starts it over the
// relayed path once DCUtR had its chance, a few times while the path stays
// relayed. A node whose NAT type is unknown (it needs two public observers,
// which a small circle often lacks) plays the hard side too; a probe that
// gets through proves the roles were right, one that does not costs the
// bounded packets of one attempt.
const (
	birthdayAttempts = 3
	birthdayDelay    = 5 * time.Second  // DCUtR's first attempts come first
	birthdayGap      = 10 * time.Second // between attempts
)

// birthdayPair reports whether this node plays the hard side towards p:
// our NAT is not known to be endpoint-independent (nor absent), and p's is
// not known to be symmetric (then p is the hard side, or nobody is).
func (n *Node) birthdayPair(p peer.ID) bool {
	ours, theirs := natHint(n.tr), n.peerNAT(p)
	return ours != presence.NATCone && ours != presence.NATNone && theirs != presence.NATSymmetric
}

// peerNAT is p's NAT hint from its presence record.
func (n *Node) peerNAT(p peer.ID) presence.NATHint {
	n.mu.Lock()
	defer n.mu.Unlock()
	if pi := n.peers[p]; pi != nil && pi.record != nil {
		return pi.record.NAT
	}
	return presence.NATUnknown
}

// maybeBirthday starts probing towards p when its path is relayed and the
// pair qualifies; one run per peer at a time.
func (n *Node) maybeBirthday(ctx context.Context, p peer.ID) {
	n.mu.Lock()
	if n.birthdays == nil {
		n.birthdays = map[peer.ID]bool{}
	}
	if n.birthdays[p] {
		n.mu.Unlock()
		return
	}
	n.birthdays[p] = true
	n.mu.Unlock()
	go func() {
		defer func() {
			n.mu.Lock()
			delete(n.birthdays, p)
			n.mu.Unlock()
		}()
		wait := time.NewTimer(birthdayDelay)
		defer wait.Stop()
		for try := 1; try <= birthdayAttempts; try++ {
			select {
			case <-ctx.Done():
				return
			case <-wait.C:
			}
			if n.tr.PathTo(p) != transport.PathRelayed || !n.birthdayPair(p) {
				return
			}
			err := n.tr.Birthday(ctx, p)
			n.log.Info("birthday probing", "peer", p, "attempt", try, "err", err)
			n.mu.Lock()
			n.bdayTried++
			if err == nil {
				n.bdayDirect++
			}
			n.mu.Unlock()
			if err == nil {
				return
			}
			wait.Reset(birthdayGap)
		}
	}()
}
