// Package peerstore is the peer cache, the bootstrap box that survives
// restarts: what this node knows about reaching each member — its addresses
// (multiaddr, kind, which box reported it, when it was last announced) with a
// health score per address fed by dial outcomes (successes, failures, connect
// time, last success), and per peer the time it was seen connected (uptime).
//
// Scores decay towards neutral with a half-life, so an address that worked a
// month ago is not preferred for ever and one that failed once is tried
// again later. The node dials peers and addresses in score order and prunes
// addresses nobody announced or reached for a configurable time.
//
// It persists through Backend, a three-method key/value interface that
// core/store implements on bbolt; peerstore itself depends on no store.
// Each peer is one record, written through on every change.
package peerstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// Backend persists peer records. Keys are peer ID bytes; values are opaque
// to the backend. Implementations must be safe for concurrent use.
type Backend interface {
	// Load calls fn for every saved record; an error from fn stops it.
	Load(ctx context.Context, fn func(key, value []byte) error) error
	// Save stores value under key, replacing any previous one.
	Save(ctx context.Context, key, value []byte) error
	// Delete removes key; deleting a missing key is not an error.
	Delete(ctx context.Context, key []byte) error
}

// Limits that keep a peer (or a flood of presence records) from growing the
// store without bound.
const (
	MaxAddrsPerPeer = 32
	MaxPeers        = 4096
)

// Score bounds and steps. A new address starts neutral; each success moves it
// halfway to 1, each failure halfway to 0.
const (
	neutralScore = 0.5
	step         = 0.5
)

// Addr is one address of a peer with its provenance and health.
type Addr struct {
	Addr    ma.Multiaddr
	Kind    string    // lan, public, observed, mapped, relay (transport.AddrKind)
	Source  string    // where it was learned: mdns, presence, pex, identify, cache, ...
	Expires time.Time // zero: never

	Score       float64 // health in [0, 1]; 0.5 until dialed
	Successes   int
	Failures    int
	LastSuccess time.Time
	LastFailure time.Time
	RTT         time.Duration // connect time of the last success (a handshake: about two round trips)
	// Seen is when a box last announced the address or a dial to it worked;
	// Prune drops addresses not seen for MaxAge.
	Seen time.Time
}

// Peer is what the cache knows of one peer as a whole.
type Peer struct {
	ID peer.ID
	// Score is the best effective score of its addresses.
	Score       float64
	LastSuccess time.Time
	// Uptime is how long this node has seen the peer connected, in total.
	Uptime time.Duration
	Addrs  []Addr // best first
}

// Options configures New.
type Options struct {
	Logger *slog.Logger
	Clock  func() time.Time // default time.Now
	// HalfLife is how fast a score fades back to neutral without new
	// outcomes (default 7 days).
	HalfLife time.Duration
}

// Store is the peer address book. Its methods are safe for concurrent use.
type Store struct {
	be      Backend
	log     *slog.Logger
	now     func() time.Time
	half    time.Duration
	mu      sync.Mutex
	peers   map[peer.ID][]*Addr
	uptime  map[peer.ID]time.Duration
	skipped int
}

// ErrFull is returned by Add when MaxPeers peers are known already.
var ErrFull = errors.New("peerstore: full")

// New loads every record from be. Records that do not decode are skipped,
// counted (Skipped) and left in the backend untouched.
func New(ctx context.Context, be Backend, o Options) (*Store, error) {
	if be == nil {
		return nil, errors.New("peerstore: new: Backend is required (use NewMemoryBackend for none)")
	}
	s := &Store{be: be, log: o.Logger, now: o.Clock, half: o.HalfLife, peers: map[peer.ID][]*Addr{}, uptime: map[peer.ID]time.Duration{}}
	if s.half <= 0 {
		s.half = 7 * 24 * time.Hour
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	err := be.Load(ctx, func(key, value []byte) error {
		p, addrs, up, err := decodeRecord(key, value)
		if err != nil {
			s.skipped++
			s.log.Warn("peerstore: skipped a record that does not decode", "err", err)
			return nil
		}
		if len(s.peers) < MaxPeers {
			s.peers[p] = addrs
			if up > 0 {
				s.uptime[p] = up
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("peerstore: load: %w", err)
	}
	return s, nil
}

// Skipped is the number of records New could not decode.
func (s *Store) Skipped() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.skipped
}

// Add merges addresses of p: a known address gets the new kind, source and
// expiry and keeps its health; a new one starts neutral. Nil addresses are
// ignored. Past MaxAddrsPerPeer the worst (lowest score, then oldest) go.
func (s *Store) Add(ctx context.Context, p peer.ID, addrs []Addr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, known := s.peers[p]
	cur := clone(old)
	if !known && len(s.peers) >= MaxPeers {
		return fmt.Errorf("%w: %d peers", ErrFull, MaxPeers)
	}
	now := s.now()
	for _, a := range addrs {
		if a.Addr == nil {
			continue
		}
		if e := find(cur, a.Addr); e != nil {
			e.Kind, e.Source, e.Expires, e.Seen = a.Kind, a.Source, a.Expires, now
			continue
		}
		n := a
		n.Score, n.Successes, n.Failures = neutralScore, 0, 0
		n.LastSuccess, n.LastFailure, n.RTT, n.Seen = time.Time{}, time.Time{}, 0, now
		cur = append(cur, &n)
	}
	if len(cur) > MaxAddrsPerPeer {
		s.sortBest(cur)
		cur = cur[:MaxAddrsPerPeer]
	}
	return s.put(ctx, p, cur)
}

// Success records a working dial (or connection) to addr of p.
func (s *Store) Success(ctx context.Context, p peer.ID, addr ma.Multiaddr, rtt time.Duration) error {
	return s.update(ctx, p, addr, func(e *Addr) {
		now := s.now()
		e.Score = s.effective(e, now)
		e.Score += (1 - e.Score) * step
		e.Successes++
		e.LastSuccess, e.Seen = now, now
		e.RTT = rtt
	})
}

// Failure records a failed dial to addr of p.
func (s *Store) Failure(ctx context.Context, p peer.ID, addr ma.Multiaddr) error {
	return s.update(ctx, p, addr, func(e *Addr) {
		now := s.now()
		e.Score = s.effective(e, now)
		e.Score -= e.Score * step
		e.Failures++
		e.LastFailure = now
	})
}

// AddUptime adds d to the time p was seen connected.
func (s *Store) AddUptime(ctx context.Context, p peer.ID, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.peers[p]
	if !ok {
		return nil
	}
	return s.putUp(ctx, p, clone(cur), s.uptime[p]+d)
}

// effective is a's score at now: it fades from the score of its last
// outcome back to neutral with the half-life, so old verdicts weigh less.
func (s *Store) effective(a *Addr, now time.Time) float64 {
	last := a.LastSuccess
	if a.LastFailure.After(last) {
		last = a.LastFailure
	}
	if last.IsZero() || !now.After(last) {
		return a.Score
	}
	f := math.Exp2(-float64(now.Sub(last)) / float64(s.half))
	return neutralScore + (a.Score-neutralScore)*f
}

func (s *Store) update(ctx context.Context, p peer.ID, addr ma.Multiaddr, f func(*Addr)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := clone(s.peers[p])
	e := find(cur, addr)
	if e == nil {
		return nil // not one of ours (e.g. learned by libp2p itself): nothing to score
	}
	f(e)
	return s.put(ctx, p, cur)
}

// Addrs returns p's unexpired addresses, best first (score, then most
// recent success).
func (s *Store) Addrs(p peer.ID) []Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addrsLocked(p, s.now())
}

func (s *Store) addrsLocked(p peer.ID, now time.Time) []Addr {
	var out []Addr
	for _, a := range s.peers[p] {
		if a.Expires.IsZero() || a.Expires.After(now) {
			c := *a
			c.Score = s.effective(a, now)
			out = append(out, c)
		}
	}
	sortBestVal(out)
	return out
}

// ByScore returns every peer with its unexpired addresses, best peer first
// (best address score, then most recent success): the dial order.
func (s *Store) ByScore() []Peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	out := make([]Peer, 0, len(s.peers))
	for p := range s.peers {
		addrs := s.addrsLocked(p, now)
		if len(addrs) == 0 {
			continue
		}
		e := Peer{ID: p, Addrs: addrs, Score: addrs[0].Score, Uptime: s.uptime[p]}
		for _, a := range addrs {
			if a.LastSuccess.After(e.LastSuccess) {
				e.LastSuccess = a.LastSuccess
			}
		}
		out = append(out, e)
	}
	slices.SortStableFunc(out, func(a, b Peer) int {
		switch {
		case a.Score != b.Score:
			if a.Score > b.Score {
				return -1
			}
			return 1
		case !a.LastSuccess.Equal(b.LastSuccess):
			if a.LastSuccess.After(b.LastSuccess) {
				return -1
			}
			return 1
		}
		return strings.Compare(string(a.ID), string(b.ID))
	})
	return out
}

// Best returns up to n of p's best unexpired multiaddrs (n <= 0: all).
func (s *Store) Best(p peer.ID, n int) []ma.Multiaddr {
	var out []ma.Multiaddr
	for _, a := range s.Addrs(p) {
		if n > 0 && len(out) == n {
			break
		}
		out = append(out, a.Addr)
	}
	return out
}

// Peers lists the known peers.
func (s *Store) Peers() []peer.ID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.peers))
}

// Forget removes p (a removed member).
func (s *Store) Forget(ctx context.Context, p peer.ID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.peers, p)
	delete(s.uptime, p)
	if err := s.be.Delete(ctx, []byte(p)); err != nil {
		return fmt.Errorf("peerstore: forget %s: %w", p, err)
	}
	return nil
}

// Retain forgets every peer keep rejects (those no longer members): the
// cache holds members' records only. It returns how many went.
func (s *Store) Retain(ctx context.Context, keep func(peer.ID) bool) (int, error) {
	n := 0
	for _, p := range s.Peers() {
		if keep(p) {
			continue
		}
		if err := s.Forget(ctx, p); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// Prune drops expired addresses and those not seen (announced by a box or
// reached) for maxAge (0: no age limit), and peers left with none; it
// returns how many addresses went.
func (s *Store) Prune(ctx context.Context, maxAge time.Duration) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	removed := 0
	for p, cur := range s.peers {
		kept := slices.DeleteFunc(slices.Clone(cur), func(a *Addr) bool {
			if maxAge > 0 && !a.Seen.IsZero() && now.Sub(a.Seen) > maxAge {
				return true
			}
			return !a.Expires.IsZero() && !a.Expires.After(now)
		})
		if len(kept) == len(cur) {
			continue
		}
		removed += len(cur) - len(kept)
		if len(kept) == 0 {
			delete(s.peers, p)
			delete(s.uptime, p)
			if err := s.be.Delete(ctx, []byte(p)); err != nil {
				return removed, fmt.Errorf("peerstore: prune %s: %w", p, err)
			}
			continue
		}
		if err := s.put(ctx, p, kept); err != nil {
			return removed, err
		}
	}
	return removed, nil
}

// put stores cur as p's record in memory and in the backend; s.mu is held.
func (s *Store) put(ctx context.Context, p peer.ID, cur []*Addr) error {
	return s.putUp(ctx, p, cur, s.uptime[p])
}

func (s *Store) putUp(ctx context.Context, p peer.ID, cur []*Addr, uptime time.Duration) error {
	val, err := encodeRecord(p, cur, uptime)
	if err != nil {
		return fmt.Errorf("peerstore: encode %s: %w", p, err)
	}
	if err := s.be.Save(ctx, []byte(p), val); err != nil {
		return fmt.Errorf("peerstore: save %s: %w", p, err)
	}
	s.peers[p] = cur
	if uptime > 0 {
		s.uptime[p] = uptime
	}
	return nil
}

// clone deep-copies l, so that a change is made in memory only once the
// backend has stored it.
func clone(l []*Addr) []*Addr {
	out := make([]*Addr, len(l))
	for i, a := range l {
		c := *a
		out[i] = &c
	}
	return out
}

func find(l []*Addr, a ma.Multiaddr) *Addr {
	for _, e := range l {
		if e.Addr.Equal(a) {
			return e
		}
	}
	return nil
}

func better(a, b *Addr) int {
	switch {
	case a.Score != b.Score:
		if a.Score > b.Score {
			return -1
		}
		return 1
	case !a.LastSuccess.Equal(b.LastSuccess):
		if a.LastSuccess.After(b.LastSuccess) {
			return -1
		}
		return 1
	}
	return 0
}

func (s *Store) sortBest(l []*Addr) {
	now := s.now()
	slices.SortStableFunc(l, func(a, b *Addr) int {
		x, y := *a, *b
		x.Score, y.Score = s.effective(a, now), s.effective(b, now)
		return better(&x, &y)
	})
}

func sortBestVal(l []Addr) {
	slices.SortStableFunc(l, func(a, b Addr) int { return better(&a, &b) })
}

// record is the persisted form of one peer, version 1.
type record struct {
	V        int         `json:"v"`
	Peer     string      `json:"peer"`
	Addrs    []addrEntry `json:"addrs"`
	UptimeMS int64       `json:"up_ms,omitempty"`
}

type addrEntry struct {
	Addr        string    `json:"a"`
	Kind        string    `json:"k,omitempty"`
	Source      string    `json:"s,omitempty"`
	Expires     time.Time `json:"exp,omitzero"`
	Score       float64   `json:"score"`
	Successes   int       `json:"ok,omitempty"`
	Failures    int       `json:"fail,omitempty"`
	LastSuccess time.Time `json:"lok,omitzero"`
	LastFailure time.Time `json:"lfail,omitzero"`
	RTT         int64     `json:"rtt_us,omitempty"`
	Seen        time.Time `json:"seen,omitzero"`
}

func encodeRecord(p peer.ID, l []*Addr, uptime time.Duration) ([]byte, error) {
	r := record{V: 1, Peer: p.String(), UptimeMS: uptime.Milliseconds()}
	for _, a := range l {
		r.Addrs = append(r.Addrs, addrEntry{
			Addr: a.Addr.String(), Kind: a.Kind, Source: a.Source, Expires: a.Expires,
			Score: a.Score, Successes: a.Successes, Failures: a.Failures,
			LastSuccess: a.LastSuccess, LastFailure: a.LastFailure, RTT: a.RTT.Microseconds(), Seen: a.Seen,
		})
	}
	return json.Marshal(r)
}

// decodeRecord parses a stored record. Addresses that do not parse are
// dropped; a record that is not JSON, has another version, or whose peer
// does not match its key is an error.
func decodeRecord(key, value []byte) (peer.ID, []*Addr, time.Duration, error) {
	var r record
	if err := json.Unmarshal(value, &r); err != nil {
		return "", nil, 0, fmt.Errorf("decode: %w", err)
	}
	if r.V != 1 {
		return "", nil, 0, fmt.Errorf("decode: record version %d, this build reads 1", r.V)
	}
	p, err := peer.Decode(r.Peer)
	if err != nil {
		return "", nil, 0, fmt.Errorf("decode: peer: %w", err)
	}
	if string(p) != string(key) {
		return "", nil, 0, errors.New("decode: record's peer does not match its key")
	}
	var out []*Addr
	for _, e := range r.Addrs {
		a, err := ma.NewMultiaddr(e.Addr)
		if err != nil || len(out) == MaxAddrsPerPeer {
			continue
		}
		score := e.Score
		if !(score >= 0 && score <= 1) { // also NaN
			score = neutralScore
		}
		out = append(out, &Addr{
			Addr: a, Kind: e.Kind, Source: e.Source, Expires: e.Expires,
			Score: score, Successes: max(e.Successes, 0), Failures: max(e.Failures, 0),
			LastSuccess: e.LastSuccess, LastFailure: e.LastFailure, RTT: time.Duration(max(e.RTT, 0)) * time.Microsecond,
			Seen: e.Seen,
		})
	}
	return p, out, time.Duration(max(r.UptimeMS, 0)) * time.Millisecond, nil
}

// MemoryBackend is a Backend in memory: for tests, and for nodes that keep
// no state on disk.
type MemoryBackend struct {
	mu sync.Mutex
	m  map[string][]byte
}

// NewMemoryBackend returns an empty MemoryBackend.
func NewMemoryBackend() *MemoryBackend { return &MemoryBackend{m: map[string][]byte{}} }

// Load implements Backend.
func (b *MemoryBackend) Load(ctx context.Context, fn func(key, value []byte) error) error {
	b.mu.Lock()
	keys := make([]string, 0, len(b.m))
	for k := range b.m {
		keys = append(keys, k)
	}
	b.mu.Unlock()
	slices.Sort(keys)
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return err
		}
		b.mu.Lock()
		v, ok := b.m[k]
		b.mu.Unlock()
		if ok {
			if err := fn([]byte(k), slices.Clone(v)); err != nil {
				return err
			}
		}
	}
	return nil
}

// Save implements Backend.
func (b *MemoryBackend) Save(_ context.Context, key, value []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.m[string(key)] = slices.Clone(value)
	return nil
}

// Delete implements Backend.
func (b *MemoryBackend) Delete(_ context.Context, key []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.m, string(key))
	return nil
}
