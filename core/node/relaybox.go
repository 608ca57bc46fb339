package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"aead.dev/minisign"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/remora-p2p/remora/core/discovery"
	"github.com/remora-p2p/remora/core/relaylist"
	"github.com/remora-p2p/remora/sdk"
)

// RelayList configures the last box: the signed list of volunteer relays
// (core/relaylist). The zero value uses the list built into the binary,
// trusting the embedded root key.
type RelayList struct {
	// Off turns the box off.
	Off bool
	// Roots replaces the embedded root keys (a private deployment's own
	// list, and tests).
	Roots []minisign.PublicKey
	// URL, when set, is fetched for a newer list every Refresh (6 h).
	URL     string
	Refresh time.Duration
	// After is how long the node tries its other boxes before it turns to
	// volunteer relays for members it still cannot reach (default 20 s).
	After time.Duration
	// MaxRelays is how many volunteer relays it holds a reservation on at
	// once (default 3), healthiest first.
	MaxRelays int
}

func (r *RelayList) fill() {
	if r.Refresh <= 0 {
		r.Refresh = 6 * time.Hour
	}
	if r.After <= 0 {
		r.After = 20 * time.Second
	}
	if r.MaxRelays <= 0 {
		r.MaxRelays = 3
	}
}

// relayListSource is the relay-list box.
type relayListSource struct{ n *Node }

func (s relayListSource) Name() string { return boxRelayList }

// Run loads the best list (stored or embedded, then fetched), and once the
// cheaper boxes had their chance, reserves slots on the healthiest
// volunteer relays and dials the members it cannot reach through them.
// Volunteer relays carry only connections to and from members: the node
// dials nobody else through them, and its gater admits relayed
// connections from members only.
func (s relayListSource) Run(ctx context.Context, emit func(discovery.Found)) error {
	n := s.n
	o := n.opts.Boxes.RelayList
	l, err := n.loadRelayList()
	if err != nil {
		n.disc.Failed(boxRelayList, err, "the list built in or stored was refused; set [relay_list] url to fetch a current one")
	}
	refresh := time.Now()
	if o.URL != "" {
		refresh = time.Time{}
	}
	if sdk.Sleep(ctx, o.After) != nil {
		return nil
	}
	for ctx.Err() == nil {
		if o.URL != "" && !time.Now().Before(refresh) {
			if nl, err := n.fetchRelayList(ctx, o.URL); err != nil {
				n.disc.Failed(boxRelayList, err, "check [relay_list] url; the list must be a bundle signed under the trusted root")
			} else if nl != nil {
				l = nl
			}
			refresh = time.Now().Add(o.Refresh)
		}
		if l != nil && l.Len() > 0 {
			n.useRelays(l, emit)
		}
		if sdk.Sleep(ctx, jitter(30*time.Second)) != nil {
			return nil
		}
	}
	return nil
}

func (n *Node) relayRoots() ([]minisign.PublicKey, error) {
	if r := n.opts.Boxes.RelayList.Roots; len(r) > 0 {
		return r, nil
	}
	return relaylist.Roots()
}

// loadRelayList picks the newest list that verifies among the stored one
// and the one built in, refusing any older than one accepted before.
func (n *Node) loadRelayList() (*relaylist.List, error) {
	roots, err := n.relayRoots()
	if err != nil {
		return nil, err
	}
	seq, _, stored, err := n.db.RelayList()
	if err != nil {
		return nil, err
	}
	var best *relaylist.List
	var bestRaw []byte
	var errs []error
	for _, raw := range [][]byte{stored, relaylist.Embedded()} {
		if len(raw) == 0 {
			continue
		}
		l, err := relaylist.Verify(raw, roots, n.opts.Now(), seq)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if best == nil || l.Seq > best.Seq {
			best, bestRaw = l, raw
		}
	}
	if best == nil {
		return nil, errors.Join(errs...)
	}
	if err := n.db.SetRelayList(best.Seq, best.Expires, bestRaw); err != nil {
		return nil, fmt.Errorf("relay list: save: %w", err)
	}
	n.disc.Succeeded(boxRelayList)
	n.log.Info("relay list loaded", "seq", best.Seq, "relays", best.Len(), "expires", best.Expires)
	return best, nil
}

// fetchRelayList gets a bundle from url; a newer list that verifies is
// stored and returned (nil if not newer).
func (n *Node) fetchRelayList(ctx context.Context, url string) (*relaylist.List, error) {
	n.disc.Attempt(boxRelayList)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("relay list: fetch %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("relay list: fetch %s: %s", url, resp.Status)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, relaylist.MaxBundle+1))
	if err != nil {
		return nil, fmt.Errorf("relay list: fetch %s: %w", url, err)
	}
	roots, err := n.relayRoots()
	if err != nil {
		return nil, err
	}
	seq, _, _, err := n.db.RelayList()
	if err != nil {
		return nil, err
	}
	l, err := relaylist.Verify(raw, roots, n.opts.Now(), seq)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	if err := n.db.SetRelayList(l.Seq, l.Expires, raw); err != nil {
		return nil, fmt.Errorf("relay list: save: %w", err)
	}
	n.disc.Succeeded(boxRelayList)
	return l, nil
}

// useRelays holds reservations on the healthiest relays and, for every
// member without a live path, reports its circuit addresses through them.
func (n *Node) useRelays(l *relaylist.List, emit func(discovery.Found)) {
	var unreached []peer.ID
	seen := map[peer.ID]bool{}
	for _, c := range n.allCircles() {
		for _, m := range c.Roster().Members() {
			if m.Peer != n.ID() && !seen[m.Peer] && !n.tr.PathTo(m.Peer).Live() {
				seen[m.Peer] = true
				unreached = append(unreached, m.Peer)
			}
		}
	}
	if len(unreached) == 0 {
		return
	}
	var relays []relaylist.Relay
	for i := 0; i < l.Len() && len(relays) < n.opts.Boxes.RelayList.MaxRelays; i++ {
		r, err := l.Relay(i)
		if err != nil {
			n.log.Warn("volunteer relay skipped", "err", err)
			continue
		}
		if r.Peer == n.ID() || n.isMember(r.Peer) {
			continue
		}
		relays = append(relays, r)
	}
	for _, r := range relays {
		if err := n.tr.AddRelay(peer.AddrInfo{ID: r.Peer, Addrs: r.Addrs}); err != nil {
			n.log.Debug("volunteer relay", "relay", r.Peer, "err", err)
		}
	}
	for _, m := range unreached {
		f := discovery.Found{Peer: m, Relay: false}
		for _, r := range relays {
			circuit := ma.StringCast("/p2p/" + r.Peer.String() + "/p2p-circuit")
			for _, a := range r.Addrs {
				f.Addrs = append(f.Addrs, a.Encapsulate(circuit))
			}
		}
		emit(f)
	}
}
