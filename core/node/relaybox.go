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
	"github.com/remora-p2p/remora/core/envelope"
	"github.com/remora-p2p/remora/core/relaylist"
	"github.com/remora-p2p/remora/core/transport"
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
	// DNS, when set, is read for a newer list every Refresh too: a board
	// (the DNS TXT box, read only) whose entries carry a bundle in chunks
	// (relaylist.Chunks; `remora bootstrap publish-dns` writes them).
	DNS discovery.Board
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

// Run loads the best list (stored or embedded), refreshes it from the
// URL and the DNS name every Refresh (members' channels bring newer lists
// too: handleRelayList), and once the cheaper boxes had their chance,
// reserves slots on the healthiest volunteer relays and dials the members
// it cannot reach through them. Volunteer relays carry only connections
// to and from members: the node dials nobody else through them, and its
// gater admits relayed connections from members only.
func (s relayListSource) Run(ctx context.Context, emit func(discovery.Found)) error {
	n := s.n
	o := n.opts.Boxes.RelayList
	if err := n.loadRelayList(); err != nil {
		n.disc.Failed(boxRelayList, err, "the list built in or stored was refused; set [relay_list] url or dns to fetch a current one")
	}
	start := time.Now()
	var refresh time.Time // zero: refresh at once
	for ctx.Err() == nil {
		if !time.Now().Before(refresh) {
			n.refreshRelayList(ctx)
			refresh = time.Now().Add(o.Refresh)
		}
		if l := n.relays.Load(); l != nil && l.Len() > 0 && time.Since(start) >= o.After {
			n.useRelays(l, emit)
		}
		wait := jitter(30 * time.Second)
		if d := time.Until(start.Add(o.After)); d > 0 {
			wait = d
		}
		if sdk.Sleep(ctx, min(wait, time.Until(refresh))) != nil {
			return nil
		}
	}
	return nil
}

// refreshRelayList asks the URL and the DNS name for a newer list; one it
// takes is shared with the circles.
func (n *Node) refreshRelayList(ctx context.Context) {
	o := n.opts.Boxes.RelayList
	type fetch struct {
		from string
		get  func(context.Context) ([]byte, error)
		fix  string
	}
	var fs []fetch
	if o.URL != "" {
		fs = append(fs, fetch{"url " + o.URL, func(ctx context.Context) ([]byte, error) { return fetchURL(ctx, o.URL) },
			"check [relay_list] url; the list must be a bundle signed under the trusted root"})
	}
	if o.DNS != nil {
		from := "dns"
		if d, ok := o.DNS.(interface{ Domain() string }); ok {
			from += " " + d.Domain()
		}
		fs = append(fs, fetch{from, func(ctx context.Context) ([]byte, error) {
			entries, err := o.DNS.Get(ctx)
			if errors.Is(err, discovery.ErrNotModified) {
				return nil, nil
			}
			if err != nil {
				return nil, err
			}
			return relaylist.Assemble(entries)
		}, "check [relay_list] dns and dns_server; the TXT records must carry a bundle signed under the trusted root (remora bootstrap publish-dns)"})
	}
	for _, f := range fs {
		n.disc.Attempt(boxRelayList)
		raw, err := f.get(ctx)
		if err == nil && raw != nil {
			var l *relaylist.List
			if l, err = n.acceptRelayBundle(raw, f.from); l != nil {
				n.shareRelayList(raw)
			}
		}
		if err != nil {
			n.disc.Failed(boxRelayList, fmt.Errorf("%s: %w", f.from, err), f.fix)
			n.log.Warn("relay list refresh", "from", f.from, "err", err)
		}
	}
}

func fetchURL(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("relay list: fetch: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("relay list: fetch: %s", resp.Status)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, relaylist.MaxBundle+1))
	if err != nil {
		return nil, fmt.Errorf("relay list: fetch: %w", err)
	}
	return raw, nil
}

// maxSharedList bounds a bundle sent to the circles (a few hundred relays;
// a larger list goes by URL).
const maxSharedList = 64 << 10

// shareRelayList sends a list this node took from the URL or DNS to every
// circle (live paths, then channels), so that members without either get
// it too.
func (n *Node) shareRelayList(raw []byte) {
	if len(raw) > maxSharedList {
		return
	}
	for _, c := range n.allCircles() {
		if c.Roster().Len() < 2 {
			continue
		}
		if _, err := n.enqueue(c.ID(), nil, envelope.KindRelayList, raw, 24*time.Hour, nil); err != nil {
			n.log.Debug("relay list share", "circle", c.ID(), "err", err)
		}
	}
}

// handleRelayList takes a list a member shared, under the same checks as
// any other (signature, delegation, expiry, rollback).
func (n *Node) handleRelayList(msg *envelope.Message) {
	if n.opts.Boxes.RelayList.Off {
		return
	}
	if len(msg.Body) > maxSharedList {
		n.count("dropped_relay_list")
		return
	}
	n.disc.Attempt(boxRelayList)
	_, err := n.acceptRelayBundle(msg.Body, "member "+msg.Sender.String())
	if errors.Is(err, relaylist.ErrRollback) {
		// a member's list older than ours: refused, and nobody's fault
		n.count("dropped_relay_list_older")
		return
	}
	if err != nil {
		n.count("dropped_relay_list")
		n.disc.Failed(boxRelayList, err, "a member shared a relay list this node refuses; nothing to do unless it repeats")
		n.log.Warn("relay list from a member refused", "from", msg.Sender, "err", err)
	}
}

func (n *Node) relayRoots() ([]minisign.PublicKey, error) {
	if r := n.opts.Boxes.RelayList.Roots; len(r) > 0 {
		return r, nil
	}
	return relaylist.Roots()
}

// loadRelayList takes the newest list that verifies among the stored one
// and the one built in, refusing any older than one accepted before.
func (n *Node) loadRelayList() error {
	_, _, stored, err := n.db.RelayList()
	if err != nil {
		return err
	}
	var errs []error
	taken := false
	for _, c := range []struct {
		from string
		raw  []byte
	}{{"store", stored}, {"built in", relaylist.Embedded()}} {
		if len(c.raw) == 0 {
			continue
		}
		l, err := n.acceptRelayBundle(c.raw, c.from)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.from, err))
		}
		taken = taken || l != nil
	}
	if !taken && n.relays.Load() == nil {
		return errors.Join(errs...)
	}
	return nil
}

// acceptRelayBundle verifies raw (signature, delegation, expiry, and no
// rollback below the highest sequence accepted before) and takes it when it
// is newer than the list in use: stored, used, reported. It returns the
// list when taken, nil when it verified but is not newer.
func (n *Node) acceptRelayBundle(raw []byte, from string) (*relaylist.List, error) {
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
		return nil, err
	}
	n.relayMu.Lock()
	defer n.relayMu.Unlock()
	if cur := n.relays.Load(); cur != nil && l.Seq <= cur.Seq {
		n.disc.Succeeded(boxRelayList)
		return nil, nil
	}
	if err := n.db.SetRelayList(l.Seq, l.Expires, raw); err != nil {
		return nil, fmt.Errorf("relay list: save: %w", err)
	}
	n.relays.Store(l)
	n.relayFrom = from
	n.disc.Succeeded(boxRelayList)
	n.noteRelays()
	n.log.Info("relay list taken", "from", from, "seq", l.Seq, "relays", l.Len(), "expires", l.Expires)
	return l, nil
}

// noteRelays puts the list in use and the volunteer relays' outcomes in
// the box report.
func (n *Node) noteRelays() {
	l := n.relays.Load()
	if l == nil {
		return
	}
	d := fmt.Sprintf("list seq %d from %s, %d relays, expires %s", l.Seq, n.relayFrom, l.Len(), l.Expires.Format(time.DateOnly))
	if dials, err := n.db.RelayDials(); err == nil && len(dials) > 0 {
		var ok, failed uint64
		for _, r := range dials {
			ok += r.Successes
			failed += r.Failures
		}
		d += fmt.Sprintf("; reservations on %d volunteer relays: %d ok, %d failed (remora bootstrap dials)", len(dials), ok, failed)
	}
	n.disc.Note(boxRelayList, d)
}

// recordRelayDial keeps the outcome of a reservation on a volunteer relay
// (not on members' relays) for curation (remora bootstrap dials).
func (n *Node) recordRelayDial(ev transport.Event) {
	n.relayMu.Lock()
	vol := n.volunteers[ev.Peer]
	n.relayMu.Unlock()
	if !vol {
		return
	}
	if err := n.db.RecordRelayDial(ev.Peer.String(), ev.Err == "", n.opts.Now()); err != nil {
		n.log.Warn("relay dial outcome", "err", err)
	}
	n.relayMu.Lock()
	defer n.relayMu.Unlock()
	n.noteRelays()
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
	n.relayMu.Lock()
	for _, r := range relays {
		n.volunteers[r.Peer] = true
	}
	n.relayMu.Unlock()
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
