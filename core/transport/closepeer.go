package transport

import (
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"
)

// ClosePeer closes every connection to p, direct and relayed. A relay
// reservation p holds on our relay ends with them, and so do the circuits
// through us that p is an end of. The gater decides whether p may connect
// again (Options.Allow).
func (t *Transport) ClosePeer(p peer.ID) error {
	if err := t.h.Network().ClosePeer(p); err != nil {
		return fmt.Errorf("transport: close %s: %w", shortID(p), err)
	}
	return nil
}
