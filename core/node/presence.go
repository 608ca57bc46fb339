package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	mrand "math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/remora-p2p/remora/core/circle"
	"github.com/remora-p2p/remora/core/delivery"
	"github.com/remora-p2p/remora/core/discovery"
	"github.com/remora-p2p/remora/core/envelope"
	"github.com/remora-p2p/remora/core/lan"
	"github.com/remora-p2p/remora/core/presence"
	"github.com/remora-p2p/remora/core/transport"
	"github.com/remora-p2p/remora/sdk"
)

func randRead(b []byte) (int, error) { return rand.Read(b) }

// presenceLoop publishes this node's presence soon after start and then on a
// jittered cadence, well before the previous record expires.
func (n *Node) presenceLoop(ctx context.Context) {
	if sdk.Sleep(ctx, jitter(500*time.Millisecond)) != nil {
		return
	}
	for {
		n.publishPresence(ctx)
		t := time.NewTimer(nextRound(time.Now(), n.opts.PresenceInterval))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-n.announce:
			t.Stop()
			// Let a burst of changes (a join and its key hand-outs) settle.
			if sdk.Sleep(ctx, jitter(200*time.Millisecond)) != nil {
				return
			}
		}
	}
}

// roundSpread is how far after a round's start on the clock a member
// publishes its presence (uniformly within it).
const roundSpread = 2 * time.Second

// nextRound is the wait from now until this node's next presence round:
// the next multiple of interval on the clock (the same instants for every
// member) at least half an interval away, plus a random part of
// roundSpread. Members publishing together let a channel fetch the whole
// round in a request or two (Matrix's sync_min_interval), so a member's
// requests per round do not grow with the circle; publishing at random
// times woke every member once per other member (BENCHMARKS.md, "Scale").
func nextRound(now time.Time, interval time.Duration) time.Duration {
	next := now.Truncate(interval).Add(interval)
	if next.Sub(now) < interval/2 {
		next = next.Add(interval)
	}
	spread := min(roundSpread, interval/10)
	return next.Sub(now) + time.Duration(mrand.Int64N(int64(spread)+1))
}

// announcePresence publishes presence soon: the circle's membership changed,
// so members that had nobody to tell now have someone.
func (n *Node) announcePresence() {
	select {
	case n.announce <- struct{}{}:
	default:
	}
}

// record builds this node's current presence record.
func (n *Node) record() (*presence.Record, error) {
	seq, err := n.db.NextPresenceSeq()
	if err != nil {
		return nil, err
	}
	now := n.opts.Now()
	r := &presence.Record{
		Peer:       n.ID(),
		Seq:        seq,
		IssuedAt:   now,
		Expiry:     now.Add(3 * n.opts.PresenceInterval),
		NAT:        natHint(n.tr),
		RelayOffer: n.relayOffer(),
		BoxKey:     n.opts.Keyring.Current().Marshal(),
	}
	for _, a := range n.tr.Addrs() {
		r.Addrs = append(r.Addrs, presence.Address{Addr: a.Multiaddr, Kind: addrKind(a.Kind), Observers: a.Observers, ObservedAt: a.ObservedAt})
	}
	if len(r.Addrs) > 32 {
		r.Addrs = r.Addrs[:32]
	}
	return r, nil
}

func addrKind(k transport.AddrKind) presence.Kind {
	switch k {
	case transport.AddrPublic:
		return presence.KindPublic
	case transport.AddrObserved:
		return presence.KindObserved
	case transport.AddrMapped:
		return presence.KindMapped
	case transport.AddrRelay:
		return presence.KindRelay
	}
	return presence.KindLAN
}

func natHint(t *transport.Transport) presence.NATHint {
	if t.Reachability() == transport.ReachabilityPublic {
		return presence.NATNone
	}
	switch t.NATType() {
	case transport.NATCone:
		return presence.NATCone
	case transport.NATSymmetric:
		return presence.NATSymmetric
	}
	return presence.NATUnknown
}

// lanHash lets two members notice they share a LAN without publishing LAN
// addresses: a keyed hash of this node's private /24 (IPv4) and /64 (IPv6)
// prefixes, keyed per circle epoch.
func (n *Node) lanHash(secret circle.EpochSecret) []byte {
	var prefixes []string
	for _, a := range n.tr.Addrs() {
		if a.Kind != transport.AddrLAN || manet.IsIPLoopback(a.Multiaddr) {
			continue
		}
		ip, err := manet.ToIP(a.Multiaddr)
		if err != nil {
			continue
		}
		if v4 := ip.To4(); v4 != nil {
			prefixes = append(prefixes, v4.Mask([]byte{255, 255, 255, 0}).String())
		} else if len(ip) == 16 {
			prefixes = append(prefixes, ip[:8].String())
		}
	}
	if len(prefixes) == 0 {
		return nil
	}
	sort.Strings(prefixes)
	return []byte(secret.BoardKey("lan/" + strings.Join(slices.Compact(prefixes), ",")))
}

// publishPresence seals this node's record (without LAN addresses) for every
// channel of every circle: to the board where the channel has one, else to
// its log, replacing a record still queued.
func (n *Node) publishPresence(ctx context.Context) {
	rec, err := n.record()
	if err != nil {
		n.log.Warn("presence record", "err", err)
		return
	}
	for _, c := range n.allCircles() {
		secrets, err := c.EpochSecrets()
		if err != nil || len(secrets) == 0 {
			continue
		}
		if c.Roster().Len() < 2 {
			continue // nobody to tell
		}
		pub := rec.ForChannel(false)
		pub.LANHash = n.lanHash(secrets[0])
		raw, err := presence.Sign(pub, n.self.PrivateKey())
		if err != nil {
			n.log.Warn("presence sign", "err", err)
			continue
		}
		// A slot key drawn afresh each window: nothing links this
		// publication to the last one on the service.
		boardKey, _ := c.PresenceBoardKey(n.opts.Now())
		for _, ch := range n.channels {
			n.publishPresenceOn(ctx, c, ch, raw, boardKey)
		}
	}
}

func (n *Node) publishPresenceOn(ctx context.Context, c *circle.Circle, ch *channel, raw []byte, boardKey string) {
	sealed, err := n.sealPresence(c, raw, ch.route())
	if err != nil {
		n.log.Debug("presence seal", "channel", ch.Name, "err", err)
		return
	}
	if b, ok := ch.Impl.(sdk.Board); ok && ch.caps.Board && boardKey != "" && len(sealed.Envelopes) == 1 {
		if err := b.Put(ctx, sdk.PutRequest{Key: boardKey, Value: ch.encode(sealed.Envelopes[0])}); err != nil {
			n.log.Warn("presence to board failed; using the log", "channel", ch.Name, "err", err)
			ch.setErr(err)
		} else {
			return
		}
	}
	ch.publish(sealed.Envelopes, delivery.PriorityPresence, "presence/"+c.ID().String(), nil)
}

func (n *Node) signer() envelope.Signer { return circle.Signer(n.self) }

// presenceBoardKeys names the board entries the members of every circle
// may have written their presence to (circle.PresenceBoardKeys).
func (n *Node) presenceBoardKeys() []string {
	var keys []string
	for _, c := range n.allCircles() {
		keys = append(keys, c.PresenceBoardKeys()...)
	}
	return keys
}

// pollBoardLoop reads the channel's board: at start, then on an interval.
func (n *Node) pollBoardLoop(ctx context.Context, ch *channel) {
	for {
		if err := ch.pollBoard(ctx, n.presenceBoardKeys(), n.receiveFromChannel); err != nil && ctx.Err() == nil {
			n.log.Warn("board poll", "channel", ch.Name, "err", err)
			ch.setErr(err)
		}
		if sdk.Sleep(ctx, jitter(n.opts.BoardPollInterval)) != nil {
			return
		}
	}
}

// handlePresence takes a presence record from a member (or, by peer
// exchange, about a member) and dials the peer if there is no live path.
func (n *Node) handlePresence(msg *envelope.Message, path string) {
	n.acceptPresence(msg.Circle, msg.Body, presenceSource(path))
}

// presenceHeld reports whether body claims to be this node's own record or
// one no newer than the record held from its peer. Such a record would be
// dropped after its signature check, so the check is skipped (peer
// exchange sends every record a member holds, most of them already held
// here); nothing else is taken from the unchecked claim.
func (n *Node) presenceHeld(body []byte) bool {
	p, seq, err := presence.Peek(body)
	if err != nil {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	pi := n.peers[p]
	return p == n.ID() || pi != nil && pi.record != nil && seq <= pi.record.Seq
}

// acceptPresence takes a signed record of a member of the circle, found by
// box source; a record of anyone else is dropped and counted.
func (n *Node) acceptPresence(circleID envelope.CircleID, body []byte, source string) {
	if n.presenceHeld(body) {
		n.count("presence_already_held")
		return
	}
	rec, err := presence.Open(body, n.opts.Now())
	if err != nil {
		n.count("dropped_presence")
		return
	}
	if rec.Peer == n.ID() {
		return
	}
	c := keys{n}.circle(circleID)
	if c == nil || !c.Roster().IsMember(rec.Peer) {
		n.count("dropped_presence_non_member")
		return
	}
	n.mu.Lock()
	pi := n.peerLocked(rec.Peer)
	fresh := rec.Newer(pi.record)
	moved := fresh && (pi.record == nil || !sameAddrs(pi.record.Addrs, rec.Addrs))
	if fresh {
		pi.record, pi.raw = rec, body
	}
	if pi.foundBy == "" {
		pi.foundBy = source
	}
	n.mu.Unlock()
	if !fresh {
		return
	}
	n.count("presence_fresh_" + source)
	n.kickPEX()
	var addrs []ma.Multiaddr
	for _, a := range rec.Addrs {
		addrs = append(addrs, a.Addr)
	}
	n.tr.AddAddrs(rec.Peer, addrs, time.Until(rec.Expiry))
	if rec.RelayOffer && n.tr.Reachability() != transport.ReachabilityPublic {
		// A member that relays for the circle: reserve a slot on it, so
		// members who cannot dial us directly reach us through it.
		var public []ma.Multiaddr
		for _, a := range rec.Addrs {
			if a.Kind != presence.KindRelay && (a.Kind != presence.KindLAN || manet.IsIPLoopback(a.Addr)) {
				public = append(public, a.Addr)
			}
		}
		if len(public) > 0 {
			if err := n.tr.AddRelay(peer.AddrInfo{ID: rec.Peer, Addrs: public}); err != nil {
				n.log.Debug("relay offer", "peer", rec.Peer, "err", err)
			}
		}
	}
	n.disc.Report(discovery.Found{Peer: rec.Peer, Addrs: addrs, Relay: rec.RelayOffer, Source: source})
	// A dial started from older (e.g. cached, now stale) addresses may be
	// waiting out a timeout: start over with these. A record that only
	// repeats the addresses (every presence cadence, every peer exchange)
	// must not restart a dial under way, or a slow one never finishes.
	n.mu.Lock()
	if moved && pi.dialing && pi.redial != nil {
		pi.redial()
	}
	n.mu.Unlock()
	n.remember(rec.Peer, rec.Addrs, source)
	if n.sameLAN(c, rec, pi) {
		go n.dialLAN(rec.Peer)
	}
	n.dial(rec.Peer)
}

// sameLAN reads the LAN hash of rec (a channel record carries one) and
// reports whether p, by the latest hash it published, shares our LAN, so
// that its private addresses (learned by peer exchange or mDNS) are worth
// dialing even while another path is live: ICE's host candidates first.
func (n *Node) sameLAN(c *circle.Circle, rec *presence.Record, pi *peerInfo) bool {
	if len(rec.LANHash) > 0 {
		same := false
		if secrets, err := c.EpochSecrets(); err == nil {
			for _, s := range secrets { // the sender may still use the previous epoch
				if h := n.lanHash(s); h != nil && bytes.Equal(h, rec.LANHash) {
					same = true
					break
				}
			}
		}
		n.mu.Lock()
		pi.sameLAN = same
		n.mu.Unlock()
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return pi.sameLAN
}

// dialLAN dials a same-LAN member's private addresses unless the path to
// it is a LAN path already; a LAN path then wins over a relayed one.
func (n *Node) dialLAN(p peer.ID) {
	if n.tr.PathTo(p) == transport.PathLAN {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	path, err := n.tr.ConnectLAN(ctx, p)
	if err != nil {
		n.log.Debug("same-LAN dial", "peer", p, "err", err)
		return
	}
	n.log.Info("same-LAN member", "peer", p, "path", path)
}

// dial connects to p in the background unless a live path exists or a dial
// is under way; on success the outbox is retried for p.
func (n *Node) dial(p peer.ID) {
	if n.tr.PathTo(p).Live() {
		return
	}
	n.mu.Lock()
	pi := n.peerLocked(p)
	if pi.dialing {
		n.mu.Unlock()
		return
	}
	pi.dialing, pi.dialStart = true, n.opts.Now()
	n.mu.Unlock()
	go func() {
		defer func() {
			n.mu.Lock()
			pi.dialing, pi.redial = false, nil
			n.mu.Unlock()
		}()
		for attempt := 0; attempt < 3; attempt++ {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			n.mu.Lock()
			pi.redial = cancel
			n.mu.Unlock()
			path, err := n.tr.Connect(ctx, p)
			redialed := errors.Is(ctx.Err(), context.Canceled)
			cancel()
			if err == nil {
				n.log.Info("connected", "peer", p, "path", path)
				return
			}
			n.log.Debug("dial failed", "peer", p, "err", err)
			if !redialed {
				n.dialFailed(p)
				n.requestPunch(p)
				return
			}
		}
	}()
}

// eventLoop follows the transport: a member connecting gets our full
// presence (LAN addresses included) and what we know of others (peer
// exchange, pex.go), and pending messages for it are sent at once.
func (n *Node) eventLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-n.tr.Events():
			if !ok {
				return
			}
			n.onPathEvent(ev)
			switch ev.Kind {
			case transport.EventReservation:
				n.recordRelayDial(ev)
			case transport.EventConnected, transport.EventPathChanged:
				n.touch(ev.Peer, "")
				if ev.Path == transport.PathRelayed {
					n.maybeBirthday(ctx, ev.Peer)
				}
				select {
				case n.kick <- ev.Peer:
				default:
				}
				if ev.Kind == transport.EventConnected {
					go n.exchangeWith(ctx, ev.Peer, true)
					n.onMemberConnected(ctx, ev.Peer)
					n.event("peer_connected", ev.Peer.String(), "%s connected (%s)", ev.Peer, ev.Path)
				}
			}
		}
	}
}

// discoverySources are the boxes the node runs itself; channels, peer
// exchange, mDNS and the boards report into Discovery as they find peers.
func (n *Node) discoverySources() []discovery.Source {
	var out []discovery.Source
	if !n.opts.Boxes.NoCache {
		out = append(out, n.cacheSource())
	}
	if n.opts.LAN != nil && n.opts.LAN.Mode != lan.Off {
		out = append(out, lanSource{n})
	}
	out = append(out, n.opts.Sources...)
	if !n.opts.Boxes.RelayList.Off {
		out = append(out, relayListSource{n})
	}
	return out
}

// learnAddrs takes a discovery result for a member.
func (n *Node) learnAddrs(f discovery.Found) {
	if !n.isMember(f.Peer) || len(f.Addrs) == 0 {
		return
	}
	n.tr.AddAddrs(f.Peer, f.Addrs, time.Hour)
	addrs := make([]presence.Address, 0, len(f.Addrs))
	for _, a := range f.Addrs {
		addrs = append(addrs, presence.Address{Addr: a})
	}
	n.remember(f.Peer, addrs, f.Source)
	n.touch(f.Peer, f.Source)
	n.dial(f.Peer)
}

// sameAddrs reports whether two records list the same addresses, in any order.
func sameAddrs(x, y []presence.Address) bool {
	if len(x) != len(y) {
		return false
	}
	set := make(map[string]bool, len(x))
	for _, a := range x {
		set[string(a.Addr.Bytes())] = true
	}
	for _, a := range y {
		if !set[string(a.Addr.Bytes())] {
			return false
		}
	}
	return true
}
