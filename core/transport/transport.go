package transport

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/p2p/transport/quicreuse"
	"go.uber.org/fx"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
	ma "github.com/multiformats/go-multiaddr"
)

// Options configures New. Identity and Allow are required.
type Options struct {
	// Identity is the device key: a libp2p crypto.PrivKey or an
	// ed25519.PrivateKey. The peer ID derives from it.
	Identity any
	// ListenAddrs are multiaddrs to listen on. Default: TCP and QUIC-v1 on
	// port 0 of 0.0.0.0 and ::.
	ListenAddrs []string
	// Allow admits a peer (circle members). It is consulted for every
	// inbound and outbound connection, direct or relayed, for relay
	// reservations and circuits. Must be fast and safe
	// for concurrent use.
	Allow func(peer.ID) bool
	// Logger receives the transport's logs; nil discards them.
	Logger *slog.Logger
	// PortMapping asks the LAN's router for a port mapping (UPnP IGD,
	// NAT-PMP); it multicasts on the LAN, so it is off unless asked for.
	PortMapping bool
	// RelayService, when set, makes this node a circuit relay v2 for
	// members (Allow) with the given limits.
	RelayService *RelayOptions
	// StaticRelays are relays (friends) this node reserves a slot on, so
	// that members can reach it through them. They are admitted by the
	// gater even when Allow does not list them. AddRelay and RemoveRelay
	// change the set later (relay offers arriving in presence).
	StaticRelays []peer.AddrInfo
	// DialFilter, when set, vetoes dialing an address (return false to
	// refuse), e.g. private ranges on a public relay host. Relay addresses
	// are checked as the relay's own address.
	DialFilter func(ma.Multiaddr) bool
	// EnableHolePunching turns on DCUtR (with application retries) and
	// simultaneous connect.
	EnableHolePunching bool
	// ForceReachability overrides AutoNAT (tests, or a user who knows).
	ForceReachability Reachability
	// MaxMessageSize bounds one message in both directions. Default
	// DefaultMaxMessageSize.
	MaxMessageSize int
	// Clock returns the current time (events, observed-address ages).
	// Default time.Now.
	Clock func() time.Time

	stack stackConfig // benchmarks only
}

// RelayOptions are the limits of the relay service. Zero fields take the
// defaults below, chosen for real messages (libp2p's own defaults, 2 min
// and 128 KiB per circuit, are meant for signalling only).
type RelayOptions struct {
	// MaxReservations is the number of members that may hold a slot (64).
	MaxReservations int
	// MaxCircuits is the number of relayed connections per peer (16).
	MaxCircuits int
	// CircuitDuration is the life of one relayed connection (1 h).
	// The relayed peers reconnect (or punch) when it ends.
	CircuitDuration time.Duration
	// CircuitData is the number of bytes per direction per relayed
	// connection (256 MiB).
	CircuitData int64
	// ReservationTTL is the life of one reservation; clients refresh (1 h).
	ReservationTTL time.Duration
	// BufferSize is the relay's copy buffer per circuit direction (64 KiB).
	BufferSize int
}

func (r RelayOptions) resources() relay.Resources {
	res := relay.DefaultResources()
	res.Limit = &relay.RelayLimit{Duration: time.Hour, Data: 256 << 20}
	res.MaxReservations = 64
	res.MaxCircuits = 16
	res.BufferSize = 64 << 10
	if r.MaxReservations > 0 {
		res.MaxReservations = r.MaxReservations
	}
	if r.MaxCircuits > 0 {
		res.MaxCircuits = r.MaxCircuits
	}
	if r.CircuitDuration > 0 {
		res.Limit.Duration = r.CircuitDuration
	}
	if r.CircuitData > 0 {
		res.Limit.Data = r.CircuitData
	}
	if r.ReservationTTL > 0 {
		res.ReservationTTL = r.ReservationTTL
	}
	if r.BufferSize > 0 {
		res.BufferSize = r.BufferSize
	}
	return res
}

// Transport is a running libp2p host. Its methods are safe for concurrent use.
type Transport struct {
	h       host.Host
	self    peer.ID
	log     *slog.Logger
	now     func() time.Time
	allow   func(peer.ID) bool
	maxMsg  int
	punch   bool
	dialOK  func(ma.Multiaddr) bool
	relayMu sync.RWMutex
	relays  map[peer.ID]*relayEntry
	hps     *holepunch.Service
	dcutr   dcutrSessions // who initiates DCUtR with whom (punchtcp.go)

	ctx    context.Context // lifetime of background work; ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool
	once   sync.Once

	handler atomic.Pointer[Handler]
	pool    streamPool

	events   chan Event
	evMu     sync.RWMutex // guards sending on events against its close
	evClosed bool
	dropped  atomic.Int64

	mu        sync.Mutex
	paths     map[peer.ID]Path      // last path announced per peer
	punched   map[peer.ID]bool      // the direct conn came from hole punching
	punching  map[peer.ID]time.Time // DCUtR started (trace), not finished
	upgrading map[peer.ID]bool      // an upgrade loop runs for the peer
	observed  map[string]*obsAddr   // our addresses as peers saw them
	rsvp      map[peer.ID][]ma.Multiaddr
	served    map[peer.ID]time.Time // members that reserved a slot on our relay, last time
	relayTTL  time.Duration         // our relay's reservation life
	reach     Reachability
	nat       map[network.NATTransportProtocol]NATType
	dirty     map[peer.ID]struct{}
	dirtySig  chan struct{}
	spraying  map[peer.ID]bool       // peers we send birthday probes for (birthday.go)
	quicCM    *quicreuse.ConnManager // libp2p's QUIC sockets: birthday probes leave from the QUIC port
}

type obsAddr struct {
	addr      ma.Multiaddr
	observers map[peer.ID]time.Time
}

// New starts a transport. Close it to release its sockets.
func New(ctx context.Context, o Options) (*Transport, error) {
	key, err := identityKey(o.Identity)
	if err != nil {
		return nil, fmt.Errorf("transport: new: %w", err)
	}
	if o.Allow == nil {
		return nil, errors.New("transport: new: Options.Allow is required (admit circle members)")
	}
	self, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("transport: new: peer ID: %w", err)
	}
	t := &Transport{
		self:      self,
		log:       o.Logger,
		now:       o.Clock,
		allow:     o.Allow,
		maxMsg:    o.MaxMessageSize,
		punch:     o.EnableHolePunching,
		dialOK:    o.DialFilter,
		relays:    map[peer.ID]*relayEntry{},
		events:    make(chan Event, 256),
		paths:     map[peer.ID]Path{},
		punched:   map[peer.ID]bool{},
		punching:  map[peer.ID]time.Time{},
		upgrading: map[peer.ID]bool{},
		observed:  map[string]*obsAddr{},
		rsvp:      map[peer.ID][]ma.Multiaddr{},
		served:    map[peer.ID]time.Time{},
		reach:     initialReach(o.ForceReachability),
		nat:       map[network.NATTransportProtocol]NATType{},
		dirty:     map[peer.ID]struct{}{},
		dirtySig:  make(chan struct{}, 1),
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	t.log = t.log.With("component", "transport")
	if t.now == nil {
		t.now = time.Now
	}
	if t.maxMsg <= 0 {
		t.maxMsg = DefaultMaxMessageSize
	}
	for _, r := range o.StaticRelays {
		t.relays[r.ID] = &relayEntry{info: r, kick: make(chan struct{}, 1)}
	}
	t.pool.init()

	listen := o.ListenAddrs
	if len(listen) == 0 {
		listen = DefaultListenAddrs
	}
	opts := []libp2p.Option{
		libp2p.Identity(key),
		libp2p.ListenAddrStrings(listen...),
		libp2p.ConnectionGater(gater{t}),
		libp2p.EnableRelay(),
		libp2p.EnableNATService(),
		libp2p.DisableMetrics(),
		libp2p.UserAgent("remora"),
	}
	opts = append(opts, stackOptions(o.stack)...)
	opts = append(opts, libp2p.WithFxOption(fx.Populate(&t.quicCM)))
	switch o.ForceReachability {
	case ReachabilityPublic:
		opts = append(opts, libp2p.ForceReachabilityPublic())
	case ReachabilityPrivate:
		opts = append(opts, libp2p.ForceReachabilityPrivate())
	}
	if o.PortMapping {
		opts = append(opts, libp2p.NATPortMap())
	}
	if o.RelayService != nil {
		t.relayTTL = o.RelayService.resources().ReservationTTL
		opts = append(opts, libp2p.EnableRelayService(
			relay.WithResources(o.RelayService.resources()),
			relay.WithACL(relayACL{t}),
		))
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("transport: new: libp2p host: %w", err)
	}
	t.h = h
	t.ctx, t.cancel = context.WithCancel(context.Background())

	sub, err := h.EventBus().Subscribe([]any{
		new(event.EvtPeerIdentificationCompleted),
		new(event.EvtLocalReachabilityChanged),
		new(event.EvtNATDeviceTypeChanged),
	})
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("transport: new: subscribe: %w", err)
	}
	t.wg.Add(2)
	go t.busLoop(sub)
	go t.pathLoop()
	h.Network().Notify(&notifiee{t})
	h.SetStreamHandler(ProtocolID, t.handleStream)
	h.SetStreamHandler(BirthdayProtocol, t.handleBirthday)

	if o.EnableHolePunching {
		ids, ok := h.(interface{ IDService() identify.IDService })
		if !ok {
			h.Close()
			return nil, errors.New("transport: new: libp2p host has no identify service")
		}
		t.hps, err = holepunch.NewService(punchHost{h, t}, ids.IDService(), t.holePunchAddrs,
			holepunch.WithTracer(punchTracer{t}), holepunch.WithAddrFilter(punchFilter{t}))
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("transport: new: hole punching: %w", err)
		}
	}
	t.relayMu.Lock()
	for _, e := range t.relays {
		t.startReserve(e)
	}
	t.relayMu.Unlock()
	t.log.Info("transport started", "peer", h.ID(), "listen", h.Network().ListenAddresses())
	return t, nil
}

func identityKey(id any) (crypto.PrivKey, error) {
	switch k := id.(type) {
	case nil:
		return nil, errors.New("Options.Identity is required (the device's ed25519 key)")
	case crypto.PrivKey:
		return k, nil
	case ed25519.PrivateKey:
		if len(k) != ed25519.PrivateKeySize {
			return nil, fmt.Errorf("Options.Identity: ed25519 key of %d bytes, want %d", len(k), ed25519.PrivateKeySize)
		}
		return crypto.UnmarshalEd25519PrivateKey(k)
	default:
		return nil, fmt.Errorf("Options.Identity: unsupported key type %T (want crypto.PrivKey or ed25519.PrivateKey)", id)
	}
}

// ID returns this transport's peer ID.
func (t *Transport) ID() peer.ID { return t.self }

// Handle sets the message handler; nil NACKs every message. Set it before
// members connect: messages that arrive with no handler are NACKed.
func (t *Transport) Handle(h Handler) {
	if h == nil {
		t.handler.Store(nil)
		return
	}
	t.handler.Store(&h)
}

// Events delivers connection and path changes; see Event. Close closes it.
func (t *Transport) Events() <-chan Event { return t.events }

// AddAddrs records addresses of p (learned from presence, mDNS, peer
// exchange, the peer cache) for ttl. Relay addresses (/p2p-circuit) are fine.
// A trailing /p2p/<p> component is accepted and stripped.
func (t *Transport) AddAddrs(p peer.ID, addrs []ma.Multiaddr, ttl time.Duration) {
	clean := make([]ma.Multiaddr, 0, len(addrs))
	for _, a := range addrs {
		if a == nil {
			continue
		}
		tr, id := peer.SplitAddr(a)
		if tr == nil || (id != "" && id != p) {
			continue
		}
		clean = append(clean, tr)
	}
	t.h.Peerstore().AddAddrs(p, clean, ttl)
}

// KnownAddrs returns the addresses recorded for p.
func (t *Transport) KnownAddrs(p peer.ID) []ma.Multiaddr { return t.h.Peerstore().Addrs(p) }

// Reachability returns AutoNAT's current verdict.
func (t *Transport) Reachability() Reachability {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.reach
}

// NATType returns the NAT type hint for presence: libp2p's verdict when it
// has one (UDP first: QUIC is what punches), else our own from observed
// addresses (see inferNAT), which needs only two observers where libp2p
// needs several.
func (t *Transport) NATType() NATType {
	t.mu.Lock()
	n, ok := t.nat[network.NATTransportUDP]
	if !ok || n == NATUnknown {
		n = t.nat[network.NATTransportTCP]
	}
	t.mu.Unlock()
	if n != "" && n != NATUnknown {
		return n
	}
	return inferNAT(t.observedAddrs())
}

// DroppedEvents counts events lost because nobody read Events in time.
func (t *Transport) DroppedEvents() int64 { return t.dropped.Load() }

// Close stops the transport: pending Sends fail with ErrClosed, connections
// close, background work ends. It is safe to call more than once.
func (t *Transport) Close() error {
	var err error
	t.once.Do(func() {
		t.closed.Store(true)
		t.cancel()
		t.pool.closeAll()
		if t.hps != nil {
			t.hps.Close()
		}
		err = t.h.Close()
		t.wg.Wait()
		t.evMu.Lock()
		t.evClosed = true
		close(t.events)
		t.evMu.Unlock()
		if err != nil {
			err = fmt.Errorf("transport: close: %w", err)
		}
	})
	return err
}

func (t *Transport) emit(e Event) {
	e.Time = t.now()
	t.evMu.RLock()
	defer t.evMu.RUnlock()
	if t.evClosed {
		return
	}
	select {
	case t.events <- e:
	default:
		t.dropped.Add(1)
		t.log.Warn("event dropped: nobody reads Events", "kind", e.Kind, "peer", e.Peer)
	}
}

// busLoop follows libp2p's event bus: observed addresses, reachability and
// NAT type.
func (t *Transport) busLoop(sub event.Subscription) {
	defer t.wg.Done()
	defer sub.Close()
	for {
		select {
		case <-t.ctx.Done():
			return
		case e, ok := <-sub.Out():
			if !ok {
				return
			}
			switch ev := e.(type) {
			case event.EvtPeerIdentificationCompleted:
				t.addObserved(ev.Peer, ev.ObservedAddr)
			case event.EvtLocalReachabilityChanged:
				r := ReachabilityUnknown
				switch ev.Reachability {
				case network.ReachabilityPublic:
					r = ReachabilityPublic
				case network.ReachabilityPrivate:
					r = ReachabilityPrivate
				}
				t.mu.Lock()
				changed := t.reach != r
				t.reach = r
				t.mu.Unlock()
				if changed {
					t.emit(Event{Kind: EventReachability, Reachability: r})
				}
			case event.EvtNATDeviceTypeChanged:
				n := NATUnknown
				switch ev.NatDeviceType {
				case network.NATDeviceTypeEndpointIndependent:
					n = NATCone
				case network.NATDeviceTypeEndpointDependent:
					n = NATSymmetric
				}
				t.mu.Lock()
				t.nat[ev.TransportProtocol] = n
				t.mu.Unlock()
				t.emit(Event{Kind: EventNATType, NAT: t.NATType()})
			}
		}
	}
}

func (t *Transport) addObserved(from peer.ID, a ma.Multiaddr) {
	if a == nil || isRelayAddr(a) {
		return // over a relayed connection the peer "observes" the circuit
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	o := t.observed[string(a.Bytes())]
	if o == nil {
		if len(t.observed) >= maxObserved {
			t.pruneObserved(now)
		}
		if len(t.observed) >= maxObserved { // bounded: peers cannot grow it without limit
			return
		}
		o = &obsAddr{addr: a, observers: map[peer.ID]time.Time{}}
		t.observed[string(a.Bytes())] = o
	}
	o.observers[from] = now
}

// Observed addresses: how many we keep, and how long one report counts.
const (
	maxObserved = 64
	observedTTL = time.Hour
)

// pruneObserved drops reports older than observedTTL; t.mu is held.
func (t *Transport) pruneObserved(now time.Time) {
	for k, o := range t.observed {
		for p, at := range o.observers {
			if now.Sub(at) > observedTTL {
				delete(o.observers, p)
			}
		}
		if len(o.observers) == 0 {
			delete(t.observed, k)
		}
	}
}

func (t *Transport) isRelay(p peer.ID) bool {
	t.relayMu.RLock()
	defer t.relayMu.RUnlock()
	_, ok := t.relays[p]
	return ok
}

// admitted is the gater's verdict for p.
func (t *Transport) admitted(p peer.ID) bool {
	return p == t.self || t.isRelay(p) || t.allow(p)
}

// DefaultListenAddrs are what a transport listens on when Options give
// none: TCP and QUIC-v1 on a port the kernel picks, on every interface.
var DefaultListenAddrs = []string{
	"/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1",
	"/ip6/::/tcp/0", "/ip6/::/udp/0/quic-v1",
}

// ListenAddrs are the addresses the transport listens on, as bound (the
// unspecified address stays unspecified; the port is the real one).
func (t *Transport) ListenAddrs() []ma.Multiaddr { return t.h.Network().ListenAddresses() }

// Host is the underlying libp2p host, for tests and diagnostics only; the
// node must not build on it.
func (t *Transport) Host() host.Host { return t.h }

// initialReach is the reachability before AutoNAT speaks: the forced one,
// since libp2p emits no reachability event when it is forced.
func initialReach(forced Reachability) Reachability {
	if forced == ReachabilityPublic || forced == ReachabilityPrivate {
		return forced
	}
	return ReachabilityUnknown
}
