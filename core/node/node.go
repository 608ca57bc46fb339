package node

import (
	"context"
	"crypto/hpke"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/remora-p2p/remora/core/circle"
	"github.com/remora-p2p/remora/core/discovery"
	"github.com/remora-p2p/remora/core/envelope"
	"github.com/remora-p2p/remora/core/identity"
	"github.com/remora-p2p/remora/core/lan"
	"github.com/remora-p2p/remora/core/peerstore"
	"github.com/remora-p2p/remora/core/pex"
	"github.com/remora-p2p/remora/core/presence"
	"github.com/remora-p2p/remora/core/relaylist"
	"github.com/remora-p2p/remora/core/store"
	"github.com/remora-p2p/remora/core/transport"
)

// Options configure a Node. Keyring and Store are required.
type Options struct {
	Keyring *identity.Keyring
	Store   *store.DB
	Logger  *slog.Logger
	// Name is this device's display name in rosters.
	Name string
	// ListenAddrs are libp2p multiaddrs (default: TCP and QUIC on all interfaces).
	ListenAddrs []string
	// KeepPorts listens, where ListenAddrs (or the default) leave the port
	// to the kernel, on the port bound last time if it is still free, so
	// the addresses friends cached stay good across a restart
	// (core/listenport). The daemon turns it on unless listen_new_ports
	// is set.
	KeepPorts bool
	Channels  []Channel
	// LAN runs the mDNS box (core/lan, lan.go) under this policy; nil is
	// off.
	LAN *lan.Policy
	// Relay, when set, lets this node be promoted to a circuit relay for its
	// circles' members (relay ACL: members only, with these limits). The
	// relay runs only while members confirm by dial-back (AutoNAT) that the
	// node is publicly reachable, and is offered in presence only after
	// RelayUptime of that. Nil opts out.
	Relay *transport.RelayOptions
	// RelayUptime is how long a node must have been up and publicly
	// reachable before it offers to relay (default 10 minutes).
	RelayUptime time.Duration
	// ForceReachability overrides AutoNAT.
	ForceReachability transport.Reachability
	// PresenceInterval is the presence publishing cadence (jittered ±20 %).
	PresenceInterval time.Duration
	// BoardPollInterval is how often channel boards are read.
	BoardPollInterval time.Duration
	// LiveTimeout bounds a live-path attempt before a message goes to the channels.
	LiveTimeout time.Duration
	// AckDelay batches signed acks.
	AckDelay time.Duration
	// DefaultTTL is a message's life when the sender gives none.
	DefaultTTL time.Duration
	// MaxPendingPerPeer is the outbox quota per recipient.
	MaxPendingPerPeer int
	// MaxHeldPerPeer bounds the envelopes held durably for one sender:
	// those waiting for its key, and the fragments of its unfinished
	// messages, each counted apart (default 4096). Past it new ones are
	// dropped and counted (dropped_held_quota); an honest sender's
	// messages stay unacked in its outbox and are tried again live. It
	// keeps one member from filling the disk by never handing out its key.
	MaxHeldPerPeer int
	// MaxHeldBytesPerPeer bounds the bytes of those envelopes per sender,
	// each kind apart (default 8 MiB: two messages of the largest size
	// reassembly accepts).
	MaxHeldBytesPerPeer int64
	// MaxHeldBytes bounds the bytes of every envelope held, all senders
	// together (default 32 MiB, the reassembler's own memory bound).
	MaxHeldBytes int64
	// Boxes configure the peer cache, peer exchange and the board boxes
	// (static web file, DNS TXT); see boxes.go and docs/discovery.md.
	Boxes Boxes
	// Discovery sources beyond channels, PEX, mDNS, the cache and the
	// boards (the relay list).
	Sources []discovery.Source
	// Mailbox configures friends' mailboxes (mailbox.go).
	Mailbox MailboxOptions
	Now     func() time.Time
}

func (o *Options) fill() error {
	if o.Keyring == nil || o.Store == nil {
		return errors.New("node: Keyring and Store are required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Name == "" {
		o.Name = "device"
	}
	defaults := []struct {
		d *time.Duration
		v time.Duration
	}{
		{&o.PresenceInterval, 5 * time.Minute},
		{&o.BoardPollInterval, 30 * time.Second},
		{&o.LiveTimeout, 5 * time.Second},
		{&o.AckDelay, 300 * time.Millisecond},
		{&o.DefaultTTL, 7 * 24 * time.Hour},
		{&o.RelayUptime, 10 * time.Minute},
	}
	for _, d := range defaults {
		if *d.d <= 0 {
			*d.d = d.v
		}
	}
	if o.MaxPendingPerPeer <= 0 {
		o.MaxPendingPerPeer = 10000
	}
	if o.MaxHeldPerPeer <= 0 {
		o.MaxHeldPerPeer = 4096
	}
	if o.MaxHeldBytesPerPeer <= 0 {
		o.MaxHeldBytesPerPeer = 8 << 20
	}
	if o.MaxHeldBytes <= 0 {
		o.MaxHeldBytes = 32 << 20
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	o.Boxes.fill()
	return nil
}

// Node is a running remora node.
type Node struct {
	opts Options
	db   *store.DB
	log  *slog.Logger
	self *identity.Identity
	tr   *transport.Transport
	// listenPorts says where the listen ports came from (Status, doctor).
	listenPorts string
	opener      *envelope.Opener
	sealer      envelope.Sealer
	channels    []*channel
	failed      []Channel // channels that could not be configured
	disc        *discovery.Discovery
	// relays is the relay list in use (relaybox.go); relayMu orders
	// taking a list and guards relayFrom and volunteers (the list's
	// relays this node reserved on, whose outcomes it records).
	relays     atomic.Pointer[relaylist.List]
	relayMu    sync.Mutex
	relayFrom  string
	volunteers map[peer.ID]bool
	cache      *peerstore.Store
	gossip     *pex.Gossip
	mb         *mailboxState
	started    time.Time
	upSince    time.Time // relay promotion's uptime, persisted (relay.go)
	upSaved    time.Time
	ready      atomic.Bool

	savesMu   sync.Mutex
	saves     map[circle.ID]*groupCommit // saveCircle's group commits
	heldRetry coalesced                  // retryHeld's walks

	mu         sync.Mutex
	circles    map[circle.ID]*circle.Circle
	byEnv      map[envelope.CircleID]*circle.Circle
	outbox     map[envelope.MessageID]*OutboxEntry
	peers      map[peer.ID]*peerInfo
	birthdays  map[peer.ID]bool                // peers with birthday probing under way (birthday.go)
	bdayTried  int                             // birthday attempts started, for Status
	bdayDirect int                             // of which made a direct path
	addrBox    map[peer.ID]map[string]string   // address → the box that reported it first
	acks       map[ackKey][]envelope.MessageID // signed acks waiting to be batched
	ackKick    chan struct{}                   // an ack was queued
	joins      map[string]*pendingJoin         // by invite token ID
	keyAsked   map[keyAsk]time.Time            // key requests sent recently (unasked)
	joinParts  joinParts
	watch      memberWatch   // members as last seen, to act on removals
	notify     chan struct{} // closed and replaced when the inbox grows
	events     []eventRec
	evNotify   chan struct{}
	kick       chan peer.ID // deliver outbox entries pending for a peer now
	wake       chan struct{}
	announce   chan struct{} // publish presence now (membership changed)
	pexKick    chan struct{} // exchange fresh records with connected members
	own        *pex.Record   // our full signed record for peer exchange
	ownAt      time.Time

	counters sync.Map // name → *atomic.Int64

	// fragMu orders holding a fragment against its message completing, so no
	// fragment is held after its message was delivered.
	fragMu    sync.Mutex
	completed map[string]time.Time // fragmentKey → when its message completed
	// quotaLogged holds the held-quota scopes (a sender's prefix, "total")
	// whose first drop was logged: later ones are only counted.
	quotaLogged sync.Map
}

type ackKey struct {
	circle circle.ID
	to     peer.ID
}

type eventRec struct {
	seq     int64
	t       time.Time
	kind    string
	message string
	ref     string
}

// peerInfo is what the node knows of one member.
type peerInfo struct {
	record   *presence.Record
	raw      []byte // the signed record, for peer exchange
	lastSeen time.Time
	foundBy  string
	dialing  bool
	// redial cancels a dial under way, to start over with fresher addresses.
	redial context.CancelFunc
	// lastPunch rate-limits probe windows with this peer.
	lastPunch time.Time
	// via is the box whose address made the live path; upSince when the
	// peer connected; dialStart when our dial started (connect time).
	via       string
	upSince   time.Time
	dialStart time.Time
	// pexAt is when we last accepted a peer exchange from the peer.
	pexAt time.Time
	// sameLAN: the peer's latest LAN hash matched ours (presence.go).
	sameLAN bool
}

// peerLocked returns what the node knows of p, creating the entry on first
// contact. n.mu must be held.
func (n *Node) peerLocked(p peer.ID) *peerInfo {
	pi := n.peers[p]
	if pi == nil {
		pi = &peerInfo{}
		n.peers[p] = pi
	}
	return pi
}

// New opens a node: its circles from the store, its transport, its channels.
// Run starts its work.
func New(ctx context.Context, opts Options) (*Node, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	n := &Node{
		volunteers: map[peer.ID]bool{},
		opts:       opts,
		log:        opts.Logger,
		self:       opts.Keyring.Identity(),
		circles:    map[circle.ID]*circle.Circle{},
		byEnv:      map[envelope.CircleID]*circle.Circle{},
		outbox:     map[envelope.MessageID]*OutboxEntry{},
		peers:      map[peer.ID]*peerInfo{},
		addrBox:    map[peer.ID]map[string]string{},
		acks:       map[ackKey][]envelope.MessageID{},
		joins:      map[string]*pendingJoin{},
		keyAsked:   map[keyAsk]time.Time{},
		notify:     make(chan struct{}),
		evNotify:   make(chan struct{}),
		kick:       make(chan peer.ID, 256),
		wake:       make(chan struct{}, 1),
		ackKick:    make(chan struct{}, 1),
		announce:   make(chan struct{}, 1),
		pexKick:    make(chan struct{}, 1),
		gossip:     pex.New(opts.Now),
		completed:  map[string]time.Time{},
		started:    opts.Now(),
	}
	n.sealer = envelope.Sealer{Now: opts.Now}
	n.db = opts.Store
	if err := n.loadUptime(); err != nil {
		return nil, err
	}
	if err := n.loadCircles(); err != nil {
		return nil, err
	}
	if err := n.loadOutbox(); err != nil {
		return nil, err
	}
	if err := n.loadJoins(); err != nil {
		return nil, err
	}
	if err := n.openMailbox(ctx); err != nil {
		return nil, err
	}
	for _, c := range opts.Channels {
		if c.Err != nil || c.Impl == nil {
			n.failed = append(n.failed, c)
			continue
		}
		ch, err := newChannel(c)
		if err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
		n.channels = append(n.channels, ch)
	}
	n.opener = envelope.NewOpener(keys{n}, n.self.PeerID(), envelope.OpenOptions{Now: opts.Now})
	if err := n.openCache(ctx); err != nil {
		return nil, err
	}
	n.disc = discovery.New(discovery.Options{Logger: n.log, Now: opts.Now})
	n.declareBoxes()
	n.disc = n.disc.With(n.discoverySources()...)
	tr, err := n.listen(ctx, transport.Options{
		Identity:           n.self.PrivateKey(),
		ListenAddrs:        opts.ListenAddrs,
		Allow:              n.isMember,
		Logger:             n.log.With("subsystem", "transport"),
		RelayService:       opts.Relay,
		EnableHolePunching: true,
		ForceReachability:  opts.ForceReachability,
		Clock:              opts.Now,
	})
	if err != nil {
		// The cache may have a flush scheduled (tidyCache): write it now,
		// while the caller's store is open. A failure is logged by the cache.
		_ = n.cache.Close(ctx)
		return nil, fmt.Errorf("node: %w", err)
	}
	n.tr = tr
	tr.Handle(n.handleLive)
	return n, nil
}

func (n *Node) circleOptions() circle.Options {
	return circle.Options{Now: n.opts.Now, Logger: n.log.With("subsystem", "circle")}
}

func (n *Node) addCircle(c *circle.Circle) {
	members := map[peer.ID]bool{}
	for _, m := range c.Roster().Members() {
		members[m.Peer] = true
	}
	n.watch.swap(c.ID(), members)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.circles[c.ID()] = c
	n.byEnv[c.ID().EnvelopeID()] = c
}

// ID is this node's peer ID.
func (n *Node) ID() peer.ID { return n.self.PeerID() }

// Transport is the node's live path (for tests and diagnostics).
func (n *Node) Transport() *transport.Transport { return n.tr }

// isMember is the connection gater: a member of any circle this device is
// still a member of.
func (n *Node) isMember(p peer.ID) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, c := range n.circles {
		if r := c.Roster(); r.IsMember(p) && r.IsMember(n.self.PeerID()) {
			return true
		}
	}
	return false
}

// circleOf returns a circle by ID.
func (n *Node) circleOf(id circle.ID) (*circle.Circle, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	c, ok := n.circles[id]
	return c, ok
}

func (n *Node) allCircles() []*circle.Circle {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]*circle.Circle, 0, len(n.circles))
	for _, c := range n.circles {
		out = append(out, c)
	}
	return out
}

// saveCircle persists a circle after any change to its log or keys. It
// returns once a save that began after the change is done: callers that
// arrive while a save of the circle runs share the next one (group commit).
// A join into a circle of n members sends every member about n sender keys
// at once; saved one by one, each a whole state and an fsync, they queued
// behind each other until the senders' live attempts timed out and went to
// the channel instead (the scale benchmark at 40 members).
func (n *Node) saveCircle(c *circle.Circle) error {
	n.savesMu.Lock()
	g := n.saves[c.ID()]
	if g == nil {
		if n.saves == nil {
			n.saves = map[circle.ID]*groupCommit{}
		}
		g = newGroupCommit()
		n.saves[c.ID()] = g
	}
	n.savesMu.Unlock()
	return g.do(func() error {
		st, err := c.State()
		if err != nil {
			return fmt.Errorf("node: circle state: %w", err)
		}
		if err := n.db.SaveCircle(c.ID(), c.Ops(), st); err != nil {
			return fmt.Errorf("node: save circle: %w", err)
		}
		return nil
	})
}

// coalesced runs f for callers of do one at a time: a call made while f
// runs returns at once and has f run once more after the current run; any
// number of such calls make one more run. The run after covers what those
// callers changed before calling. A call made from inside f (f's work
// causing another call) is such a call.
type coalesced struct {
	mu      sync.Mutex
	running bool
	again   bool
}

func (c *coalesced) do(f func()) {
	c.mu.Lock()
	if c.running {
		c.again = true
		c.mu.Unlock()
		return
	}
	c.running = true
	for {
		c.again = false
		c.mu.Unlock()
		f()
		c.mu.Lock()
		if !c.again {
			c.running = false
			c.mu.Unlock()
			return
		}
	}
}

// groupCommit runs a save for every caller of do, sharing saves: a caller
// waits for the first save that starts after it called, and a save started
// on behalf of several callers serves them all. A caller gets the error of
// the last save finished when it wakes: one that finished after its own can
// only report a failure its change may share, never hide one (a later save
// that succeeded wrote its change too).
type groupCommit struct {
	mu      sync.Mutex
	cond    *sync.Cond
	asked   uint64 // callers so far
	done    uint64 // callers served by the last finished save
	running bool
	err     error // of the last finished save
}

func newGroupCommit() *groupCommit {
	g := &groupCommit{}
	g.cond = sync.NewCond(&g.mu)
	return g
}

func (g *groupCommit) do(save func() error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.asked++
	mine := g.asked
	for g.done < mine {
		if g.running {
			g.cond.Wait()
			continue
		}
		// Every caller counted by now changed what it changed before
		// calling: a save that starts here sees all of them.
		g.running = true
		upTo := g.asked
		g.mu.Unlock()
		err := save()
		g.mu.Lock()
		g.running, g.done, g.err = false, upTo, err
		g.cond.Broadcast()
	}
	return g.err
}

// count bumps a named counter (dropped envelopes by reason, ...).
func (n *Node) count(name string) {
	v, _ := n.counters.LoadOrStore(name, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

// Counters returns the node's counters.
func (n *Node) Counters() map[string]int64 {
	out := map[string]int64{}
	n.counters.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return out
}

func (n *Node) event(kind, ref, format string, args ...any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.events = append(n.events, eventRec{seq: int64(len(n.events) + 1), t: n.opts.Now(), kind: kind, ref: ref, message: fmt.Sprintf(format, args...)})
	if len(n.events) > 10000 {
		n.events = n.events[len(n.events)-10000:]
	}
	close(n.evNotify)
	n.evNotify = make(chan struct{})
}

// Run runs the node until ctx ends, then closes it.
func (n *Node) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, ch := range n.channels {
		wg.Go(func() { ch.pacer.Run(ctx, ch.Impl.Publish) })
		wg.Go(func() { ch.subscribe(ctx, n.log, n.db, n.receiveFromChannel) })
		if ch.caps.Board {
			wg.Go(func() { n.pollBoardLoop(ctx, ch) })
		}
	}
	wg.Go(func() { n.presenceLoop(ctx) })
	wg.Go(func() { n.deliveryLoop(ctx) })
	wg.Go(func() { n.eventLoop(ctx) })
	wg.Go(func() { n.ackLoop(ctx) })
	wg.Go(func() { n.maintainLoop(ctx) })
	wg.Go(func() { n.pexLoop(ctx) })
	wg.Go(func() { n.releaseLoop(ctx) })
	wg.Go(func() {
		n.disc.Run(ctx, func(f discovery.Found) { n.learnAddrs(f) })
	})
	for _, b := range n.opts.Boxes.Boards {
		wg.Go(func() { n.boardLoop(ctx, b) })
	}
	// Envelopes and fragments held before a restart are tried again now.
	n.retryHeld()
	n.ready.Store(true)
	n.log.Info("node ready", "peer", n.ID(), "circles", len(n.allCircles()), "channels", len(n.channels))
	<-ctx.Done()
	wg.Wait()
	return n.Close()
}

// Ready reports whether Run has started every loop.
func (n *Node) Ready() bool { return n.ready.Load() }

// Close stops the transport and writes the peer cache's pending changes,
// so the caller may close the store next. Run calls it.
func (n *Node) Close() error {
	n.saveUptime(true)
	err := n.tr.Close()
	// After the transport, so that what its stream handlers (peer
	// exchange) added until then is written too.
	if cerr := n.cache.Close(context.Background()); err == nil {
		err = cerr
	}
	return err
}

// keys implements envelope.Keys over all of the node's circles.
type keys struct{ n *Node }

func (k keys) Epochs() []*envelope.EpochKeys {
	var out []*envelope.EpochKeys
	for _, c := range k.n.allCircles() {
		out = append(out, c.Epochs()...)
	}
	return out
}

func (k keys) circle(id envelope.CircleID) *circle.Circle {
	k.n.mu.Lock()
	defer k.n.mu.Unlock()
	return k.n.byEnv[id]
}

func (k keys) Members(id envelope.CircleID, e envelope.Epoch) []envelope.Member {
	if c := k.circle(id); c != nil {
		return c.Members(id, e)
	}
	return nil
}

func (k keys) MessageKeys(id envelope.CircleID, e envelope.Epoch, sender peer.ID) ([][]byte, bool) {
	if c := k.circle(id); c != nil {
		return c.MessageKeys(id, e, sender)
	}
	return nil, false
}

func (k keys) BoxKeys() []hpke.PrivateKey {
	var out []hpke.PrivateKey
	for _, bk := range k.n.opts.Keyring.BoxKeys() {
		pk, err := hpke.NewDHKEMPrivateKey(bk.Private)
		if err == nil {
			out = append(out, pk)
		}
	}
	return out
}
