package node

import (
	"fmt"
	"time"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/core/transport"
)

// Friend relays (DESIGN "Relay promotion"): a device relays for its
// circles' members only with the user's consent (Options.Relay set), while
// it is publicly reachable, and once it has been up for RelayUptime. The
// uptime is persisted: a restart (or a short sleep) shorter than uptimeGap
// keeps the stretch, so a relay that restarts for an update is not demoted
// for ten minutes, and a device that only ever runs for minutes at a time
// never qualifies.
const (
	uptimeGap   = 20 * time.Minute // a longer gap starts a new stretch
	uptimeWrite = 10 * time.Minute // how often the stretch is saved
)

// loadUptime restores the current stretch of uptime from the store.
func (n *Node) loadUptime() error {
	n.upSince = n.opts.Now()
	if n.opts.Relay == nil {
		return nil // nothing waits on it: no write every few minutes
	}
	since, seen, err := n.db.Uptime()
	if err != nil {
		return fmt.Errorf("node: uptime: %w", err)
	}
	if now := n.opts.Now(); !since.IsZero() && now.Sub(seen) <= uptimeGap && !since.After(now) {
		n.upSince = since
	}
	return nil
}

// saveUptime records that the node is running; final is the last call.
func (n *Node) saveUptime(final bool) {
	if n.opts.Relay == nil {
		return
	}
	now := n.opts.Now()
	if !final && now.Sub(n.upSaved) < uptimeWrite {
		return
	}
	if err := n.db.SetUptime(n.upSince, now); err != nil {
		n.log.Warn("save uptime", "err", err)
		return
	}
	n.upSaved = now
}

// relayOffer reports whether this node offers to relay for members: the
// user consented, members confirmed by dial-back that it is publicly
// reachable, and it has been up long enough to be worth a reservation.
func (n *Node) relayOffer() bool {
	return n.opts.Relay != nil && n.tr.Reachability() == transport.ReachabilityPublic &&
		n.opts.Now().Sub(n.upSince) >= n.opts.RelayUptime
}

// relayStatus is who relays for whom, for the status API.
func (n *Node) relayStatus() *api.RelayStatus {
	rs := &api.RelayStatus{Enabled: n.opts.Relay != nil, Offering: n.relayOffer()}
	if rs.Enabled {
		rs.UpSince = n.upSince
	}
	for _, p := range n.tr.Served() {
		rs.Serving = append(rs.Serving, p.String())
	}
	for _, p := range n.tr.Reserved() {
		rs.Using = append(rs.Using, p.String())
	}
	return rs
}

// natBehaviour names the NAT's mapping and filtering as far as AutoNAT
// and the observers of our addresses show them.
func natBehaviour(t *transport.Transport) (mapping, filtering string) {
	mapping, filtering = "unknown", "unknown"
	switch t.Reachability() {
	case transport.ReachabilityPublic:
		filtering = "open" // members' dial-backs got in unsolicited
	case transport.ReachabilityPrivate:
		filtering = "filtering" // unsolicited dials fail: punch or relay
	}
	switch t.NATType() {
	case transport.NATCone:
		mapping = "endpoint-independent"
	case transport.NATSymmetric:
		mapping = "endpoint-dependent"
	}
	if t.Reachability() == transport.ReachabilityPublic && mapping == "unknown" {
		mapping = "none"
	}
	return mapping, filtering
}
