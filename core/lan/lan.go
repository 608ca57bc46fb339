package lan

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/zeroconf/v2"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// ServiceType is the DNS-SD type announced and browsed: libp2p's, so that
// the type does not single this software out on a LAN.
const ServiceType = "_p2p._udp"

// Options configure a [Service].
type Options struct {
	Self   peer.ID
	Policy Policy
	// SealKeys are the keys to seal this node's entries under: one per
	// circle, its current epoch's. OpenKeys are all keys entries may be
	// sealed under (current and grace-window epochs of every circle).
	SealKeys, OpenKeys func() [][32]byte
	// Addrs are this node's listen addresses; an interface announces
	// those on its own addresses.
	Addrs func() []ma.Multiaddr
	// Found is called with every member entry opened (never this node's).
	Found func(Announcement)
	// Networks, when set, is told the verdict on the interfaces whenever
	// it changes (for `remora doctor`).
	Networks func([]Network)
	// Interfaces lists the interfaces (default SystemInterfaces).
	Interfaces func() ([]Interface, error)
	// Rotate is how long announced names live at most (default 1 h).
	Rotate time.Duration
	// Check is how often interfaces, keys and addresses are looked at
	// (default 5 s); Rebrowse how often a browse starts over, so that
	// entries seen before are read again (default 1 min).
	Check, Rebrowse time.Duration
	Logger          *slog.Logger
	Now             func() time.Time
}

// server is one registered DNS-SD service (a *zeroconf.Server).
type server interface {
	SetText([]string)
	Shutdown()
}

// registerZeroconf announces a service on one interface.
func registerZeroconf(instance, host string, port int, ips, text []string, ifc net.Interface) (server, error) {
	return zeroconf.RegisterProxy(instance, ServiceType, "local.", port, host, ips, text, []net.Interface{ifc}, zeroconf.TTL(120))
}

// Service announces this node and browses for members on the allowed
// networks until its context ends.
type Service struct {
	o Options
	// seen counts announcements read, opened those a key opened.
	seen, opened atomic.Int64
	// register announces a service (registerZeroconf; tests record it).
	register func(instance, host string, port int, ips, text []string, ifc net.Interface) (server, error)
	mu       sync.Mutex
	// per interface name
	ann map[string]*announcer
}

type announcer struct {
	srv    server
	netID  string
	born   time.Time
	sealed time.Time
	fp     string // what the text was made from
}

// New returns a service; Run starts it.
func New(o Options) *Service {
	if o.Interfaces == nil {
		o.Interfaces = SystemInterfaces
	}
	if o.Rotate <= 0 {
		o.Rotate = time.Hour
	}
	if o.Check <= 0 {
		o.Check = 5 * time.Second
	}
	if o.Rebrowse <= 0 {
		o.Rebrowse = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Service{o: o, ann: map[string]*announcer{}, register: registerZeroconf}
}

// Run announces and browses until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	defer s.stopAll()
	var last []Network
	var b browsing
	defer b.stop()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		t.Reset(s.o.Check)
		ifs, err := s.o.Interfaces()
		if err != nil {
			s.o.Logger.Warn("lan: interfaces", "err", err)
			continue
		}
		nets := s.o.Policy.Decide(ifs)
		if !slices.EqualFunc(nets, last, func(a, b Network) bool { return a.ID() == b.ID() && a.Allowed == b.Allowed }) {
			last = nets
			if s.o.Networks != nil {
				s.o.Networks(nets)
			}
		}
		var allowed []net.Interface
		var names []string
		for _, n := range nets {
			if !n.Allowed {
				continue
			}
			ifc, err := net.InterfaceByIndex(n.Index)
			if err != nil {
				continue
			}
			allowed = append(allowed, *ifc)
			names = append(names, n.ID())
			s.announce(n, *ifc)
		}
		s.retire(nets)
		// Browse on the allowed interfaces, afresh when they change and
		// every Rebrowse (a browse reports an instance once).
		if b.cancel != nil && (!slices.Equal(names, b.names) || time.Since(b.started) >= s.o.Rebrowse) {
			b.stop()
		}
		if b.cancel == nil && len(allowed) > 0 {
			bctx, cancel := context.WithCancel(ctx)
			b = browsing{cancel: cancel, names: names, started: time.Now()}
			b.wg.Go(func() { s.browse(bctx, allowed) })
		}
	}
}

// browsing is the browse in progress.
type browsing struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	names   []string
	started time.Time
}

func (b *browsing) stop() {
	if b.cancel != nil {
		b.cancel()
		b.wg.Wait()
		b.cancel = nil
	}
}

// announce keeps the service on one allowed interface current: fresh
// names when the network changes or the names are older than Rotate, a
// re-sealed text when keys or addresses change or the entries age.
func (s *Service) announce(n Network, ifc net.Interface) {
	now := s.o.Now()
	text, fp := s.text(n)
	s.mu.Lock()
	a := s.ann[n.Name]
	s.mu.Unlock()
	if a != nil && (len(text) == 0 || a.netID != n.ID() || now.Sub(a.born) >= s.o.Rotate) {
		// nothing to say any more, another network, or time for new names
		a.srv.Shutdown()
		s.mu.Lock()
		delete(s.ann, n.Name)
		s.mu.Unlock()
		a = nil
	}
	if len(text) == 0 {
		return
	}
	if a == nil {
		var ips []string
		for _, p := range n.Addrs {
			ips = append(ips, p.Addr().String())
		}
		port, _ := rand.Int(rand.Reader, big.NewInt(30000))
		srv, err := s.register(randomName(), randomName(), 20000+int(port.Int64()), ips, text, ifc)
		if err != nil {
			s.o.Logger.Warn("lan: announce", "interface", n.Name, "err", err)
			return
		}
		a = &announcer{srv: srv, netID: n.ID(), born: now, sealed: now, fp: fp}
		s.mu.Lock()
		s.ann[n.Name] = a
		s.mu.Unlock()
		s.o.Logger.Debug("lan: announcing", "interface", n.Name, "entries", len(text))
		return
	}
	if fp != a.fp || now.Sub(a.sealed) >= MaxAge/3 {
		a.srv.SetText(text)
		a.fp, a.sealed = fp, now
	}
}

// retire stops announcing on interfaces gone or no longer allowed.
func (s *Service) retire(nets []Network) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, a := range s.ann {
		keep := slices.ContainsFunc(nets, func(n Network) bool { return n.Name == name && n.Allowed })
		if !keep {
			a.srv.Shutdown()
			delete(s.ann, name)
		}
	}
}

func (s *Service) stopAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, a := range s.ann {
		a.srv.Shutdown()
		delete(s.ann, name)
	}
}

// text seals this node's addresses on n for every circle, padded to
// MinEntries; fp fingerprints what it was made from.
func (s *Service) text(n Network) (text []string, fp string) {
	var addrs []ma.Multiaddr
	for _, m := range s.o.Addrs() {
		ip, err := manet.ToIP(m)
		if err != nil {
			continue
		}
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			continue
		}
		if slices.ContainsFunc(n.Addrs, func(p netip.Prefix) bool { return p.Addr() == a.Unmap() }) {
			addrs = append(addrs, m)
		}
	}
	keys := s.o.SealKeys()
	if len(addrs) == 0 || len(keys) == 0 {
		return nil, ""
	}
	var b strings.Builder
	for _, m := range addrs {
		b.WriteString(m.String() + " ")
	}
	for _, k := range keys {
		fmt.Fprintf(&b, "%x ", k[:4])
	}
	issued := s.o.Now()
	for _, k := range keys[:min(len(keys), MaxEntries)] {
		e, err := Seal(k, Announcement{Peer: s.o.Self, Addrs: addrs, IssuedAt: issued})
		if err != nil {
			s.o.Logger.Warn("lan: seal", "err", err)
			return nil, ""
		}
		text = append(text, e)
	}
	for len(text) < MinEntries {
		text = append(text, Pad(len(text[0])))
	}
	// the order would tell padding (last) from entries
	for i := len(text) - 1; i > 0; i-- {
		j, _ := rand.Int(rand.Reader, big.NewInt(int64(i+1)))
		text[i], text[j.Int64()] = text[j.Int64()], text[i]
	}
	return text, b.String()
}

// browse reads announcements on ifaces until ctx ends.
func (s *Service) browse(ctx context.Context, ifaces []net.Interface) {
	entries := make(chan *zeroconf.ServiceEntry, 16)
	done := make(chan error, 1)
	go func() { done <- zeroconf.Browse(ctx, ServiceType, "local.", entries, zeroconf.SelectIfaces(ifaces)) }()
	for {
		select {
		case e, ok := <-entries:
			if !ok { // Browse ended (it closes entries)
				return
			}
			s.handle(e)
		case err := <-done:
			// It ended before it could start (no usable interface): entries
			// stays open, nobody writes to it any more.
			if err != nil {
				s.o.Logger.Debug("lan: browse", "err", err)
			}
			return
		}
	}
}

// Counts says how many announcements of others were read, and how many of
// them opened (a member's).
func (s *Service) Counts() (seen, opened int64) { return s.seen.Load(), s.opened.Load() }

func (s *Service) handle(e *zeroconf.ServiceEntry) {
	keys := s.o.OpenKeys()
	if len(keys) == 0 {
		return
	}
	now := s.o.Now()
	for _, txt := range e.Text[:min(len(e.Text), MaxEntries)] {
		a, ok := Open(keys, txt, now)
		if !ok {
			continue
		}
		if a.Peer != s.o.Self {
			a.Instance = e.Instance
			s.seen.Add(1)
			s.opened.Add(1)
			s.o.Found(a)
		}
		return
	}
	s.seen.Add(1)
}

func randomName() string {
	var b [10]byte
	rand.Read(b[:])
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}
