package node

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/core/circle"
	"github.com/remora-p2p/remora/core/discovery"
	"github.com/remora-p2p/remora/core/envelope"
	"github.com/remora-p2p/remora/core/lan"
	"github.com/remora-p2p/remora/core/peerstore"
	"github.com/remora-p2p/remora/core/presence"
	"github.com/remora-p2p/remora/core/transport"
	"github.com/remora-p2p/remora/sdk"
)

// Boxes configure the bootstrap boxes other than the channels
// (docs/discovery.md). The zero value turns on the peer cache and peer
// exchange with their defaults.
type Boxes struct {
	// NoCache turns the peer cache off: addresses and their health are
	// kept in memory only and forgotten at restart.
	NoCache bool
	// CacheMaxAge prunes cached addresses that no box announced and no
	// dial reached for this long (default 30 days).
	CacheMaxAge time.Duration
	// NoPEX turns peer exchange off: this node neither sends nor accepts
	// members' records over live connections.
	NoPEX bool
	// PEXInterval is the cadence of the periodic exchange (default 2 min,
	// jittered); exchanges also happen on connect and on change.
	PEXInterval time.Duration
	// Boards are the static web file and DNS TXT boxes: the node publishes
	// its sealed presence there and reads the other members'.
	Boards []discovery.Board
	// RelayList is the last box (relaybox.go).
	RelayList RelayList
}

func (b *Boxes) fill() {
	b.RelayList.fill()
	if b.CacheMaxAge <= 0 {
		b.CacheMaxAge = 30 * 24 * time.Hour
	}
	if b.PEXInterval <= 0 {
		b.PEXInterval = 2 * time.Minute
	}
}

// Box names in the report, cheapest first; channels report as
// "channel:NAME" and boards under their own names.
const (
	boxMDNS      = "mdns"
	boxCache     = "cache"
	boxPEX       = "pex"
	boxRelayList = "relaylist"
)

// declareBoxes puts every box in the report, cheapest first, the ones that
// are off with how to turn them on.
func (n *Node) declareBoxes() {
	n.disc.Declare(boxMDNS, n.opts.LAN != nil && n.opts.LAN.Mode != lan.Off,
		"set [lan] mdns = \"auto\" in config.toml (the LAN's members are found without any server)")
	n.disc.Declare(boxCache, !n.opts.Boxes.NoCache, "set [cache] enabled = true in config.toml")
	n.disc.Declare(boxPEX, !n.opts.Boxes.NoPEX, "set [pex] enabled = true in config.toml")
	for _, ch := range n.channels {
		n.disc.Declare("channel:"+ch.Name, true, "")
	}
	for _, f := range n.failed {
		n.disc.Declare("channel:"+f.Name, false, "fix the channel (see its line under channels)")
	}
	for _, b := range n.opts.Boxes.Boards {
		n.disc.Declare(b.Name(), true, "")
	}
	n.disc.Declare(boxRelayList, !n.opts.Boxes.RelayList.Off, "set [relay_list] enabled = true in config.toml")
}

// openCache opens the peer cache (in memory only when it is off), keeping
// members' records only and pruning what went stale while the node was down.
func (n *Node) openCache(ctx context.Context) error {
	var be peerstore.Backend = n.db.PeerCache()
	if n.opts.Boxes.NoCache {
		be = peerstore.NewMemoryBackend()
	}
	ps, err := peerstore.New(ctx, be, peerstore.Options{Logger: n.log.With("subsystem", "peercache"), Clock: n.opts.Now})
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.cache = ps
	n.tidyCache()
	return nil
}

// tidyCache forgets non-members and prunes stale addresses. The cache
// writes the deletions with its next flush.
func (n *Node) tidyCache() {
	if gone := n.cache.Retain(n.isMember); gone > 0 {
		n.log.Info("peer cache: forgot peers that are no longer members", "peers", gone)
	}
	n.cache.Prune(n.opts.Boxes.CacheMaxAge)
}

// cacheSource is the peer cache as a box: it reports every cached member
// without a live path, best score first (the dial order), addresses best
// first; at start, then again after 2 s, 4 s ... up to 5 min, so that a
// member that was down when we started is reached when it comes back.
func (n *Node) cacheSource() discovery.Source { return cacheSource{n} }

type cacheSource struct{ n *Node }

func (c cacheSource) Name() string { return boxCache }

func (c cacheSource) Run(ctx context.Context, emit func(discovery.Found)) error {
	n := c.n
	wait := 2 * time.Second
	for {
		n.disc.Attempt(boxCache)
		for _, p := range n.cache.ByScore() {
			if n.tr.PathTo(p.ID).Live() {
				continue
			}
			f := discovery.Found{Peer: p.ID, At: p.LastSuccess}
			for _, a := range p.Addrs {
				f.Addrs = append(f.Addrs, a.Addr)
			}
			emit(f)
		}
		if sdk.Sleep(ctx, jitter(wait)) != nil {
			return nil
		}
		wait = min(2*wait, 5*time.Minute)
	}
}

// remember records addresses of member p that box reported: in the peer
// cache (with their kinds) and in the map that names the box whose address
// made a path.
func (n *Node) remember(p peer.ID, addrs []presence.Address, box string) {
	var entries []peerstore.Addr
	n.mu.Lock()
	m := n.addrBox[p]
	if m == nil {
		m = map[string]string{}
		n.addrBox[p] = m
	}
	for _, a := range addrs {
		key := addrKey(p, a.Addr)
		if key == "" {
			continue
		}
		if _, ok := m[key]; !ok && len(m) < 4*peerstore.MaxAddrsPerPeer {
			m[key] = box
		}
		kind := ""
		if a.Kind != 0 {
			kind = a.Kind.String()
		}
		entries = append(entries, peerstore.Addr{Addr: a.Addr, Kind: kind, Source: box})
	}
	n.mu.Unlock()
	if box == boxCache || len(entries) == 0 {
		return
	}
	// Add changes memory only (the cache writes later, in batches), so its
	// one error is a full cache.
	if err := n.cache.Add(p, entries); err != nil {
		n.log.Warn("peer cache", "peer", p, "err", err)
	}
}

// addrKey is a's identity for attribution: without a trailing /p2p/<p>.
func addrKey(p peer.ID, a ma.Multiaddr) string {
	if a == nil {
		return ""
	}
	if last, err := a.ValueForProtocol(ma.P_P2P); err == nil && last == p.String() {
		a, _ = ma.SplitLast(a)
	}
	return string(a.Bytes())
}

// boxOf names the box that reported address a of p ("" if none did).
func (n *Node) boxOf(p peer.ID, a ma.Multiaddr) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.addrBox[p][addrKey(p, a)]
}

// onPathEvent follows connections for the cache (dial outcomes, uptime)
// and for "which box made this path".
func (n *Node) onPathEvent(ev transport.Event) {
	now := n.opts.Now()
	switch ev.Kind {
	case transport.EventConnected, transport.EventPathChanged:
		ci := n.tr.Conn(ev.Peer)
		box := n.boxOf(ev.Peer, ci.Remote)
		n.mu.Lock()
		pi := n.peerLocked(ev.Peer)
		if ev.Kind == transport.EventConnected {
			pi.upSince = now
		}
		switch {
		case box != "":
			pi.via = box
		case pi.via != "":
			// an upgrade of a path a box made (addresses learned over it)
		case ci.Outbound:
			pi.via = "identify"
		default:
			pi.via = "inbound"
		}
		rtt := time.Duration(0)
		if !pi.dialStart.IsZero() {
			rtt = now.Sub(pi.dialStart)
		}
		n.mu.Unlock()
		if ci.Outbound && ci.Remote != nil {
			n.cache.Success(ev.Peer, ci.Remote, rtt)
		}
	case transport.EventDisconnected:
		n.gossip.Forget(ev.Peer)
		n.mu.Lock()
		pi := n.peerLocked(ev.Peer)
		up := time.Duration(0)
		if !pi.upSince.IsZero() {
			up = now.Sub(pi.upSince)
		}
		pi.upSince, pi.via = time.Time{}, ""
		n.mu.Unlock()
		n.cache.AddUptime(ev.Peer, up)
	}
}

// dialFailed scores every cached address of p down after a dial that
// reached none of them.
func (n *Node) dialFailed(p peer.ID) {
	for _, a := range n.cache.Addrs(p) {
		n.cache.Failure(p, a.Addr)
	}
}

// presenceSource names the box a presence record came through: the
// channel or board it was read from, or peer exchange over a live path.
func presenceSource(path string) string {
	switch transport.Path(path) {
	case transport.PathLAN, transport.PathDirect, transport.PathPunched, transport.PathRelayed, transport.PathNone:
		return boxPEX
	}
	return path
}

// sealPresence seals a signed presence record of circle c for route.
func (n *Node) sealPresence(c *circle.Circle, raw []byte, route envelope.Route) (*envelope.Sealed, error) {
	ek, err := c.SendEpochKeys()
	if err != nil {
		return nil, err
	}
	sk, err := c.SendKey()
	if err != nil {
		return nil, err
	}
	now := n.opts.Now()
	return n.sealer.Broadcast(ek, n.signer(), sk.Key[:], envelope.Draft{
		Kind: envelope.KindPresence, Timestamp: now, Expiry: now.Add(3 * n.opts.PresenceInterval), Body: raw,
	}, route)
}

// boardRoute is the route of a board's envelopes: its own channel ID, so
// an envelope copied from a board to anywhere else does not open.
func boardRoute(b discovery.Board) envelope.Route {
	return envelope.Route{Channel: "remora/box/" + b.Name(), MaxSize: b.MaxValue()}
}

// boardLoop publishes this node's sealed presence to board b on the
// presence cadence (and when membership changes) and reads the other
// members' entries on the board poll cadence.
//
// After a start the board is read after 1 s, 2 s, 4 s ... up to the poll
// interval: members starting together find each other in seconds, not a
// poll interval later, and an idle node settles at one cheap conditional
// read per interval.
func (n *Node) boardLoop(ctx context.Context, b discovery.Board) {
	seen := map[string][32]byte{}
	var nextPublish time.Time
	wait := min(time.Second, n.opts.BoardPollInterval)
	for {
		if !n.opts.Now().Before(nextPublish) {
			n.publishToBoard(ctx, b)
			nextPublish = n.opts.Now().Add(jitter(n.opts.PresenceInterval))
		}
		n.readBoard(ctx, b, seen)
		if sdk.Sleep(ctx, jitter(wait)) != nil {
			return
		}
		wait = min(2*wait, n.opts.BoardPollInterval)
	}
}

func (n *Node) publishToBoard(ctx context.Context, b discovery.Board) {
	rec, err := n.record()
	if err != nil {
		return
	}
	entries := map[string][]byte{}
	for _, c := range n.allCircles() {
		secrets, err := c.EpochSecrets()
		if err != nil || len(secrets) == 0 || c.Roster().Len() < 2 {
			continue
		}
		pub := rec.ForChannel(false)
		raw, err := presence.Sign(pub, n.self.PrivateKey())
		if err != nil {
			continue
		}
		sealed, err := n.sealPresence(c, raw, boardRoute(b))
		if err != nil || len(sealed.Envelopes) != 1 {
			n.log.Warn("presence for box", "box", b.Name(), "err", err)
			continue
		}
		if key, ok := c.PresenceBoardKey(n.opts.Now()); ok {
			entries[key] = sealed.Envelopes[0]
		}
	}
	if len(entries) == 0 {
		return
	}
	n.disc.Attempt(b.Name())
	err = b.Put(ctx, entries)
	switch {
	case errors.Is(err, discovery.ErrReadOnly):
	case err != nil && ctx.Err() == nil:
		n.log.Warn("publish presence to box", "box", b.Name(), "err", err)
		n.disc.Failed(b.Name(), fmt.Errorf("publish: %w", err), discovery.Fix(err, "see the daemon's log"))
	case err == nil:
		n.disc.Succeeded(b.Name())
	}
}

func (n *Node) readBoard(ctx context.Context, b discovery.Board, seen map[string][32]byte) {
	n.disc.Attempt(b.Name())
	entries, err := b.Get(ctx)
	if errors.Is(err, discovery.ErrNotModified) {
		n.disc.Succeeded(b.Name())
		return
	}
	if err != nil {
		if ctx.Err() == nil {
			n.log.Debug("read box", "box", b.Name(), "err", err)
			n.disc.Failed(b.Name(), fmt.Errorf("read: %w", err), discovery.Fix(err, "see the daemon's log"))
		}
		return
	}
	n.disc.Succeeded(b.Name())
	route := boardRoute(b)
	for k, v := range entries {
		h := sha256.Sum256(v)
		if seen[k] == h {
			continue
		}
		if len(seen) < 4096 {
			seen[k] = h
		}
		// Foreign, stale or forged entries are dropped and counted.
		n.receive(ctx, route.Channel, v, b.Name(), "")
	}
}

// RelayDials implements api.Backend: reservation outcomes on volunteer
// relays, as stored.
func (n *Node) RelayDials(ctx context.Context) ([]api.RelayDial, error) {
	ds, err := n.db.RelayDials()
	if err != nil {
		return nil, err
	}
	out := make([]api.RelayDial, 0, len(ds))
	for _, d := range ds {
		out = append(out, api.RelayDial{Peer: d.Peer, Successes: d.Successes, Failures: d.Failures, LastSuccess: d.LastSuccess, LastFailure: d.LastFailure})
	}
	return out, nil
}

// Boxes implements api.Backend: the bootstrap boxes' report.
func (n *Node) Boxes(ctx context.Context) ([]api.Box, error) {
	var out []api.Box
	chErr := map[string]error{}
	for _, ch := range n.channels {
		if _, err := ch.health(); err != nil {
			chErr["channel:"+ch.Name] = err
		}
	}
	for _, st := range n.disc.Boxes() {
		b := api.Box{Name: st.Name, Configured: st.Configured, LastAttempt: st.LastAttempt, LastSuccess: st.LastSuccess,
			Found: st.Found, LastFound: st.LastFound, Error: st.LastError, Fix: st.Fix, Detail: st.Detail}
		if err := chErr[st.Name]; err != nil && b.Error == "" {
			b.Error, b.Fix = err.Error(), Advice(err)
		}
		switch {
		case !b.Configured:
			b.State = "off"
		case b.Error != "":
			b.State = "failing"
		case !b.LastSuccess.IsZero():
			b.State = "ok"
		default:
			b.State = "idle"
		}
		out = append(out, b)
	}
	return out, nil
}
