package transport

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// Timeouts of the connect strategy.
const (
	directDialTimeout = 5 * time.Second
	relayDialTimeout  = 10 * time.Second
	// relayHeadStart is how long direct addresses are tried alone before
	// relay addresses join (RFC 8305's connection attempt delay is 250 ms;
	// a LAN or public peer answers well within it).
	relayHeadStart = 300 * time.Millisecond
	// relayYield is the extra wait of the higher peer ID (see connect).
	relayYield = time.Second
)

// upgradeBackoff is the wait before each application-driven DCUtR retry on a
// relayed path (libp2p runs DCUtR once, when the relayed connection appears).
var upgradeBackoff = []time.Duration{1 * time.Second, 5 * time.Second, 15 * time.Second, 45 * time.Second}

// Connect makes sure a live path to p exists, trying in DESIGN.md's order:
// an existing connection; the direct addresses known for p (LAN and public,
// dialed together, best first); then, after a head start of the direct
// dial that it does not cancel, its relay addresses. A relayed path is
// returned at once and upgraded to direct in the background (DCUtR, retried
// by the transport); EventPathChanged tells when. Addresses come from
// AddAddrs. Errors: ErrNotAllowed, ErrNoAddrs, ErrClosed, or the dial errors.
func (t *Transport) Connect(ctx context.Context, p peer.ID) (Path, error) {
	path, err := t.connect(ctx, p)
	if err != nil {
		return PathNone, fmt.Errorf("transport: connect %s: %w", shortID(p), t.closedOr(err))
	}
	return path, nil
}

func (t *Transport) connect(ctx context.Context, p peer.ID) (Path, error) {
	if t.closed.Load() {
		return PathNone, ErrClosed
	}
	if p == t.self {
		return PathNone, errors.New("cannot connect to self")
	}
	if !t.admitted(p) {
		return PathNone, ErrNotAllowed
	}
	if path := t.PathTo(p); path.IsDirect() {
		return path, nil
	}
	var direct, relayed []ma.Multiaddr
	for _, a := range t.h.Peerstore().Addrs(p) {
		if isRelayAddr(a) {
			relayed = append(relayed, a)
		} else {
			direct = append(direct, a)
		}
	}
	if len(direct) == 0 && len(relayed) == 0 && !t.PathTo(p).Live() {
		return PathNone, ErrNoAddrs
	}
	// Direct addresses first; relays join after a head start (happy
	// eyeballs), so that an address behind a filtering NAT, which never
	// answers, costs relayHeadStart rather than the whole direct timeout.
	// The direct dial goes on meanwhile: if it succeeds after the relay,
	// the path is upgraded (never downgraded: bestConn prefers direct).
	var errs []error
	var directDone chan error
	if len(direct) > 0 {
		directDone = make(chan error, 1)
		dctx, cancel := context.WithTimeout(network.WithForceDirectDial(context.WithoutCancel(ctx), "remora direct"), directDialTimeout)
		untrack := t.dcutr.trackPlain(p, direct, t.now(), cancel)
		go func() {
			defer untrack()
			defer cancel()
			stop := context.AfterFunc(t.ctx, cancel)
			defer stop()
			directDone <- t.h.Connect(dctx, peer.AddrInfo{ID: p, Addrs: direct})
		}()
		headStart := relayHeadStart
		if t.self > p {
			// Both ends usually dial at once (each learns the other's
			// presence together): the higher peer ID lets the lower one
			// make the relayed connection, so that one relayed
			// connection and one DCUtR run result, not two that collide.
			headStart += relayYield
		}
		if len(relayed) == 0 && !t.PathTo(p).Live() {
			headStart = directDialTimeout + time.Second // nothing else to try
		}
		timer := time.NewTimer(headStart)
		tick := time.NewTicker(25 * time.Millisecond)
	wait:
		for {
			select {
			case err := <-directDone:
				directDone = nil
				if err != nil {
					errs = append(errs, fmt.Errorf("direct: %w", err))
				}
				break wait
			case <-tick.C:
				// The peer's relayed connection came in. (A direct one is
				// judged by the dial's own result: a connection the peer's
				// gater is about to refuse looks live for a moment.)
				if t.PathTo(p) == PathRelayed {
					break wait
				}
			case <-timer.C:
				break wait
			case <-ctx.Done():
				timer.Stop()
				tick.Stop()
				return PathNone, ctx.Err()
			}
		}
		timer.Stop()
		tick.Stop()
		if path := t.PathTo(p); path.IsDirect() {
			return path, nil
		}
	}
	if path := t.PathTo(p); path == PathRelayed {
		t.startUpgrade(p)
		return path, nil
	}
	if len(relayed) > 0 {
		rctx, cancel := context.WithTimeout(network.WithAllowLimitedConn(ctx, "remora relay"), relayDialTimeout)
		err := t.h.Connect(rctx, peer.AddrInfo{ID: p, Addrs: relayed})
		cancel()
		if path := t.PathTo(p); path.Live() {
			if path == PathRelayed {
				t.startUpgrade(p)
			}
			return path, nil
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("relay: %w", err))
		}
	}
	if directDone != nil { // the relay failed: the direct dial is the last hope
		select {
		case err := <-directDone:
			if path := t.PathTo(p); path.Live() {
				return path, nil
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("direct: %w", err))
			}
		case <-ctx.Done():
			errs = append(errs, ctx.Err())
		}
	}
	if len(errs) == 0 {
		errs = append(errs, ErrNoAddrs)
	}
	return PathNone, errors.Join(errs...)
}

// ConnectLAN dials p's known private (LAN) addresses, for a member known to
// share our LAN, whatever other path is live: a LAN path is preferred over
// every other (PathTo) and streams move to it. A direct connection through
// the router's public address (hairpin) already counts as direct, and
// libp2p dials no second direct connection beside it.
func (t *Transport) ConnectLAN(ctx context.Context, p peer.ID) (Path, error) {
	if !t.admitted(p) {
		return PathNone, fmt.Errorf("transport: connect %s on the LAN: %w", shortID(p), ErrNotAllowed)
	}
	var lan []ma.Multiaddr
	for _, a := range t.h.Peerstore().Addrs(p) {
		if !isRelayAddr(a) && !manet.IsPublicAddr(a) {
			lan = append(lan, a)
		}
	}
	if len(lan) == 0 {
		return PathNone, fmt.Errorf("transport: connect %s on the LAN: %w", shortID(p), ErrNoAddrs)
	}
	dctx, cancel := context.WithTimeout(network.WithForceDirectDial(ctx, "remora lan"), directDialTimeout)
	defer cancel()
	if err := t.h.Connect(dctx, peer.AddrInfo{ID: p, Addrs: lan}); err != nil {
		return PathNone, fmt.Errorf("transport: connect %s on the LAN: %w", shortID(p), t.closedOr(err))
	}
	return t.PathTo(p), nil
}

// SimultaneousConnect dials p's direct addresses while p dials ours, for a
// probe window agreed over a channel (DESIGN.md "Connect"): both sides call
// it at the same moment and keep trying until ctx ends. The lower peer ID is
// the QUIC client; the other side sprays packets to open its NAT and waits
// for the client's handshake. Needs EnableHolePunching.
func (t *Transport) SimultaneousConnect(ctx context.Context, p peer.ID) (Path, error) {
	path, err := t.simConnect(ctx, p)
	if err != nil {
		return PathNone, fmt.Errorf("transport: simultaneous connect %s: %w", shortID(p), t.closedOr(err))
	}
	return path, nil
}

func (t *Transport) simConnect(ctx context.Context, p peer.ID) (Path, error) {
	if !t.punch {
		return PathNone, errors.New("hole punching is disabled (Options.EnableHolePunching)")
	}
	if !t.admitted(p) {
		return PathNone, ErrNotAllowed
	}
	var direct []ma.Multiaddr
	for _, a := range t.h.Peerstore().Addrs(p) {
		if !isRelayAddr(a) {
			direct = append(direct, a)
		}
	}
	if len(direct) == 0 {
		return PathNone, ErrNoAddrs
	}
	isClient := t.self < p
	var last error
	for attempt := 0; ; attempt++ {
		if path := t.PathTo(p); path.IsDirect() {
			return path, nil
		}
		if t.closed.Load() {
			return PathNone, ErrClosed
		}
		actx, cancel := context.WithTimeout(ctx, directDialTimeout)
		actx = network.WithForceDirectDial(actx, "remora punch")
		actx = network.WithSimultaneousConnect(actx, isClient, "remora punch")
		err := t.h.Connect(actx, peer.AddrInfo{ID: p, Addrs: direct})
		cancel()
		if path := t.PathTo(p); path.IsDirect() {
			if path == PathDirect {
				t.setPunched(p)
				path = PathPunched
			}
			return path, nil
		}
		if err != nil {
			last = err
		}
		t.log.Debug("simultaneous connect attempt failed", "peer", p, "attempt", attempt, "client", isClient, "err", err)
		select {
		case <-ctx.Done():
			return PathNone, errors.Join(ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// startUpgrade runs, at most once per peer at a time, upgrade attempts on a
// relayed path until it is direct, the peer is gone, or the backoff ends:
// each round dials the peer's known direct addresses, then (with hole
// punching on, and if the relayed connection is inbound) retries DCUtR over
// it.
func (t *Transport) startUpgrade(p peer.ID) {
	if t.closed.Load() {
		return
	}
	t.mu.Lock()
	if t.upgrading[p] {
		t.mu.Unlock()
		return
	}
	t.upgrading[p] = true
	t.mu.Unlock()
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer func() {
			t.mu.Lock()
			delete(t.upgrading, p)
			t.mu.Unlock()
		}()
		for i, wait := range upgradeBackoff {
			select {
			case <-t.ctx.Done():
				return
			case <-time.After(jitter(wait)):
			}
			if t.PathTo(p) != PathRelayed {
				return // upgraded (libp2p's own DCUtR run) or gone
			}
			initiator := t.hps != nil && t.relayedInbound(p) && t.dcutrReady()
			// Addresses learned since (identify over the relayed conn,
			// presence) may simply be dialable: LAN peers, public hosts.
			// The DCUtR initiator leaves that to DCUtR, which dials them
			// before it punches when one is public: a plain TCP dial
			// beside the punch would join it without its role
			// (punchtcp.go).
			if !(initiator && t.hasPublicDirect(p)) && t.dialDirect(p) {
				t.log.Info("relayed path upgraded by a direct dial", "peer", p, "attempt", i+1)
				return
			}
			if !initiator {
				// DCUtR is initiated by the end that accepted the relayed
				// connection; libp2p resets a DCUtR stream arriving over
				// a connection the receiver accepted (seen in the NAT lab).
				// It also waits for a public address of ours (dcutrReady).
				continue
			}
			err := t.hps.DirectConnect(p)
			if err == nil && t.PathTo(p).IsDirect() {
				t.setPunched(p)
				t.log.Info("relayed path upgraded", "peer", p, "attempt", i+1)
				return
			}
			t.log.Debug("dcutr retry failed", "peer", p, "attempt", i+1, "err", err)
		}
		t.log.Info("relayed path stays relayed", "peer", p, "attempts", len(upgradeBackoff))
	}()
}

// jitter spreads d over [d, 1.5d), so that both ends of a relayed path do
// not start their DCUtR retries at the same moment and collide.
func jitter(d time.Duration) time.Duration {
	return d + rand.N(d/2+1)
}

// dialDirect tries p's known direct addresses once and reports success.
func (t *Transport) dialDirect(p peer.ID) bool {
	var direct []ma.Multiaddr
	for _, a := range t.h.Peerstore().Addrs(p) {
		if !isRelayAddr(a) {
			direct = append(direct, a)
		}
	}
	if len(direct) == 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(network.WithForceDirectDial(t.ctx, "remora upgrade"), directDialTimeout)
	defer cancel()
	defer t.dcutr.trackPlain(p, direct, t.now(), cancel)()
	err := t.h.Connect(ctx, peer.AddrInfo{ID: p, Addrs: direct})
	return err == nil && t.PathTo(p).IsDirect()
}

// hasPublicDirect reports whether a public direct address of p is known,
// which DCUtR's initiator dials before it punches.
func (t *Transport) hasPublicDirect(p peer.ID) bool {
	for _, a := range t.h.Peerstore().Addrs(p) {
		if !isRelayAddr(a) && manet.IsPublicAddr(a) {
			return true
		}
	}
	return false
}

// relayedInbound reports whether p reached us through a relay, which makes
// us the DCUtR initiator.
func (t *Transport) relayedInbound(p peer.ID) bool {
	for _, c := range t.h.Network().ConnsToPeer(p) {
		if (c.Stat().Limited || isRelayAddr(c.RemoteMultiaddr())) && c.Stat().Direction == network.DirInbound {
			return true
		}
	}
	return false
}

// dcutrReady reports whether the DCUtR service registered its handler, which
// it does only once we know a public address of ours (DirectConnect would
// block until then).
func (t *Transport) dcutrReady() bool {
	for _, id := range t.h.Mux().Protocols() {
		if id == "/libp2p/dcutr" {
			return true
		}
	}
	return false
}

// circuitAddrs builds our /p2p-circuit addresses through relay r from the
// relay's addresses (those it sent in the reservation, else the configured ones).
func circuitAddrs(r peer.AddrInfo, fromRsvp []ma.Multiaddr) []ma.Multiaddr {
	base := fromRsvp
	if len(base) == 0 {
		base = r.Addrs
	}
	circuit := ma.StringCast("/p2p/" + r.ID.String() + "/p2p-circuit")
	var out []ma.Multiaddr
	for _, a := range base {
		tr, _ := peer.SplitAddr(a)
		if tr == nil {
			continue
		}
		out = append(out, tr.Encapsulate(circuit))
	}
	return out
}
