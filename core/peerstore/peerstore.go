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
// It persists through Backend, a two-method key/value interface that
// core/store implements on bbolt; peerstore itself depends on no store.
// Each peer is one record. A change applies in memory at once and marks its
// peer dirty; the dirty records and deletions are written together, in one
// Backend.Apply, FlushDelay (1 s) after the first change, on Flush and on
// Close. A burst of peer exchange then costs one transaction instead of one
// fsync per record, and no caller waits on the disk. The cache is a hint, so
// this is an accepted loss: a crash forgets the changes of the last
// FlushDelay (and any a failing disk kept back), which the other boxes find
// again.
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
	// Apply stores every value of puts under its key, replacing any
	// previous one, and removes every key of deletes (a missing key is not
	// an error), all or nothing: one transaction. A key is in at most one
	// of the two.
	Apply(ctx context.Context, puts map[string][]byte, deletes []string) error
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

// DefaultFlushDelay bounds what a crash can lose to one second of changes,
// while a burst of peer exchange (a circle's records arrive within a few
// hundred milliseconds) still becomes one transaction, and a busy node
// commits the cache at most once a second.
const DefaultFlushDelay = time.Second

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

// Timer is a scheduled flush; *time.Timer is one.
type Timer interface {
	// Stop cancels the flush if it has not started.
	Stop() bool
}

// Options configures New.
type Options struct {
	Logger *slog.Logger
	Clock  func() time.Time // default time.Now
	// HalfLife is how fast a score fades back to neutral without new
	// outcomes (default 7 days).
	HalfLife time.Duration
	// FlushDelay is how long after the first unwritten change the changes
	// are written, together (default DefaultFlushDelay).
	FlushDelay time.Duration
	// AfterFunc schedules that write: it calls f in its own goroutine after
	// d (default time.AfterFunc). Tests pass one they fire themselves.
	AfterFunc func(d time.Duration, f func()) Timer
}

// Store is the peer address book. Its methods are safe for concurrent use.
type Store struct {
	be    Backend
	log   *slog.Logger
	now   func() time.Time
	half  time.Duration
	delay time.Duration
	after func(time.Duration, func()) Timer
	// flushing holds a token while a flush runs: flushes write one at a
	// time, so an older snapshot never overwrites a newer one.
	flushing chan struct{}

	mu     sync.Mutex
	peers  map[peer.ID][]*Addr
	uptime map[peer.ID]time.Duration
	// dirty holds the peers changed since the last flush: written if still
	// in peers, deleted if not.
	dirty   map[peer.ID]struct{}
	timer   Timer // the scheduled flush; nil: none
	closed  bool
	skipped int
}

// ErrFull is returned by Add when MaxPeers peers are known already.
var ErrFull = errors.New("peerstore: full")

// New loads every record from be. Records that do not decode are skipped,
// counted (Skipped) and left in the backend untouched. Close the Store to
// write its last changes.
func New(ctx context.Context, be Backend, o Options) (*Store, error) {
	if be == nil {
		return nil, errors.New("peerstore: new: Backend is required (use NewMemoryBackend for none)")
	}
	s := &Store{
		be: be, log: o.Logger, now: o.Clock, half: o.HalfLife, delay: o.FlushDelay, after: o.AfterFunc,
		flushing: make(chan struct{}, 1),
		peers:    map[peer.ID][]*Addr{}, uptime: map[peer.ID]time.Duration{}, dirty: map[peer.ID]struct{}{},
	}
	if s.half <= 0 {
		s.half = 7 * 24 * time.Hour
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.delay <= 0 {
		s.delay = DefaultFlushDelay
	}
	if s.after == nil {
		s.after = func(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }
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
// Its only error is ErrFull: writing is the flush's.
func (s *Store) Add(p peer.ID, addrs []Addr) error {
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
	s.put(p, cur)
	return nil
}

// Success records a working dial (or connection) to addr of p.
func (s *Store) Success(p peer.ID, addr ma.Multiaddr, rtt time.Duration) {
	s.update(p, addr, func(e *Addr) {
		now := s.now()
		e.Score = s.effective(e, now)
		e.Score += (1 - e.Score) * step
		e.Successes++
		e.LastSuccess, e.Seen = now, now
		e.RTT = rtt
	})
}

// Failure records a failed dial to addr of p.
func (s *Store) Failure(p peer.ID, addr ma.Multiaddr) {
	s.update(p, addr, func(e *Addr) {
		now := s.now()
		e.Score = s.effective(e, now)
		e.Score -= e.Score * step
		e.Failures++
		e.LastFailure = now
	})
}

// AddUptime adds d to the time p was seen connected.
func (s *Store) AddUptime(p peer.ID, d time.Duration) {
	if d <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.peers[p]; !ok {
		return
	}
	s.uptime[p] += d
	s.markLocked(p)
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

func (s *Store) update(p peer.ID, addr ma.Multiaddr, f func(*Addr)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := clone(s.peers[p])
	e := find(cur, addr)
	if e == nil {
		return // not one of ours (e.g. learned by libp2p itself): nothing to score
	}
	f(e)
	s.put(p, cur)
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

// Forget removes p (a removed member). Its record is deleted even if it
// was never loaded (it did not decode, or the cache was full).
func (s *Store) Forget(p peer.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forgetLocked(p)
}

func (s *Store) forgetLocked(p peer.ID) {
	delete(s.peers, p)
	delete(s.uptime, p)
	s.markLocked(p)
}

// Retain forgets every peer keep rejects (those no longer members): the
// cache holds members' records only. It returns how many went. keep runs
// without the Store's lock, so it may take locks of its own.
func (s *Store) Retain(keep func(peer.ID) bool) int {
	var gone []peer.ID
	for _, p := range s.Peers() {
		if !keep(p) {
			gone = append(gone, p)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range gone {
		s.forgetLocked(p)
	}
	return len(gone)
}

// Prune drops expired addresses and those not seen (announced by a box or
// reached) for maxAge (0: no age limit), and peers left with none; it
// returns how many addresses went.
func (s *Store) Prune(maxAge time.Duration) int {
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
			s.forgetLocked(p)
			continue
		}
		s.put(p, kept)
	}
	return removed
}

// put makes cur p's record and marks p dirty; s.mu is held.
func (s *Store) put(p peer.ID, cur []*Addr) {
	s.peers[p] = cur
	s.markLocked(p)
}

// markLocked notes that p's record changed and schedules a flush if none
// is; s.mu is held. After Close only an explicit Flush writes.
func (s *Store) markLocked(p peer.ID) {
	s.dirty[p] = struct{}{}
	if s.timer == nil && !s.closed {
		s.timer = s.after(s.delay, s.flushLater)
	}
}

// flushLater is the scheduled flush. Its error is logged by flush; the
// dirty set stays for the next change's flush, so a failing disk is tried
// again on the next change and at Close, not in a loop of its own.
func (s *Store) flushLater() {
	_ = s.flush(context.Background(), true)
}

// Flush writes every change not written yet, in one Backend.Apply. On
// failure the changes stay pending for the next flush, and the error is
// logged and returned.
func (s *Store) Flush(ctx context.Context) error {
	return s.flush(ctx, false)
}

// Close writes what is pending, like Flush, and stops scheduling flushes:
// call it before closing the backend. The Store still answers afterwards,
// and writes later changes only on an explicit Flush.
func (s *Store) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	if err := s.flush(ctx, false); err != nil {
		return fmt.Errorf("peerstore: close: %w", err)
	}
	return nil
}

// pending is one dirty peer's record as a flush found it.
type pending struct {
	addrs  []*Addr
	uptime time.Duration
	gone   bool // forgotten: delete the record
}

func (s *Store) flush(ctx context.Context, scheduled bool) error {
	select {
	case s.flushing <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("peerstore: flush: %w", ctx.Err())
	}
	defer func() { <-s.flushing }()

	s.mu.Lock()
	if scheduled && s.closed {
		// Close flushed (or is flushing) already; the backend may be
		// closed by now.
		s.mu.Unlock()
		return nil
	}
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	dirty := s.dirty
	if len(dirty) == 0 {
		s.mu.Unlock()
		return nil
	}
	s.dirty = map[peer.ID]struct{}{}
	// Records are copied on write (clone), so the slices taken here stay
	// as they are and encode without the lock.
	snap := make(map[peer.ID]pending, len(dirty))
	for p := range dirty {
		addrs, ok := s.peers[p]
		snap[p] = pending{addrs: addrs, uptime: s.uptime[p], gone: !ok}
	}
	s.mu.Unlock()

	puts := make(map[string][]byte, len(snap))
	var deletes []string
	for p, r := range snap {
		if r.gone {
			deletes = append(deletes, string(p))
			continue
		}
		val, err := encodeRecord(p, r.addrs, r.uptime)
		if err != nil {
			// Not kept pending: it would fail again. Its stored record,
			// if any, stays as it was.
			s.log.Warn("peerstore: a record does not encode; not written", "peer", p, "err", err)
			continue
		}
		puts[string(p)] = val
	}
	if len(puts) == 0 && len(deletes) == 0 {
		return nil
	}
	if err := s.be.Apply(ctx, puts, deletes); err != nil {
		s.mu.Lock()
		maps.Copy(s.dirty, dirty)
		s.mu.Unlock()
		s.log.Warn("peerstore: flush failed; the changes stay pending", "records", len(puts), "deletions", len(deletes), "err", err)
		return fmt.Errorf("peerstore: flush %d records, %d deletions: %w", len(puts), len(deletes), err)
	}
	return nil
}

// clone deep-copies l. Records are copied on write, never changed in place,
// so that a flush can encode the ones it took without holding s.mu.
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

// Apply implements Backend.
func (b *MemoryBackend) Apply(_ context.Context, puts map[string][]byte, deletes []string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k, v := range puts {
		b.m[k] = slices.Clone(v)
	}
	for _, k := range deletes {
		delete(b.m, k)
	}
	return nil
}
