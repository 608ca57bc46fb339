package pex

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Bounds of one exchange.
const (
	// MaxRecords is the most records in one exchange.
	MaxRecords = 64
	// MaxBody bounds one exchange's body (64 records of at most 8 KiB
	// would not fit: the list is cut there and the rest goes next time).
	MaxBody = 128 << 10
	// MinGap is the least time between two exchanges to one member.
	MinGap = time.Second
)

// Record is one signed presence record a node holds.
type Record struct {
	Subject peer.ID
	Seq     uint64
	Signed  []byte
}

// Gossip remembers what each connected member has been sent. It is safe
// for concurrent use.
type Gossip struct {
	mu   sync.Mutex
	now  func() time.Time
	sent map[peer.ID]map[peer.ID]uint64 // recipient → subject → highest seq sent
	last map[peer.ID]time.Time          // recipient → last exchange
	// after is, per recipient, the subject the last exchange ended with:
	// the next one starts after it. A circle of more than MaxRecords
	// members whose records keep being renewed would otherwise fill every
	// exchange with the same first subjects, and the others would never
	// be sent (seen at 150 members: half of all pairs never got a fresh
	// record by peer exchange).
	after map[peer.ID]peer.ID
}

// New returns an empty Gossip; now is the clock (time.Now when nil).
func New(now func() time.Time) *Gossip {
	if now == nil {
		now = time.Now
	}
	return &Gossip{now: now, sent: map[peer.ID]map[peer.ID]uint64{}, last: map[peer.ID]time.Time{}, after: map[peer.ID]peer.ID{}}
}

// Pick returns what to send member to now, from the records held of the
// members of a circle both share: those newer than what to was sent
// (never to's own record), own first and then by subject, starting after
// the subject the last exchange to to ended with and wrapping around, cut
// at MaxRecords and MaxBody. It returns nil when nothing is due or the last
// exchange to to was less than MinGap ago; force ignores MinGap (a new
// connection).
func (g *Gossip) Pick(to peer.ID, own *Record, held []Record, force bool) []Record {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !force && g.now().Sub(g.last[to]) < MinGap {
		return nil
	}
	sent := g.sent[to]
	var out []Record
	size := 0
	add := func(r Record) bool {
		if r.Subject == to || len(r.Signed) == 0 {
			return true
		}
		if s, ok := sent[r.Subject]; ok && r.Seq <= s {
			return true
		}
		n := len(r.Signed) + binary.MaxVarintLen64
		if len(out) == MaxRecords || size+n > MaxBody {
			return false
		}
		out = append(out, r)
		size += n
		return true
	}
	if own != nil {
		add(*own)
	}
	held = slices.Clone(held)
	slices.SortFunc(held, func(a, b Record) int { return strings.Compare(string(a.Subject), string(b.Subject)) })
	if last, ok := g.after[to]; ok {
		i, found := slices.BinarySearchFunc(held, last, func(r Record, p peer.ID) int { return strings.Compare(string(r.Subject), string(p)) })
		if found {
			i++
		}
		held = slices.Concat(held[i:], held[:i])
	}
	for _, r := range held {
		before := len(out)
		if !add(r) {
			break
		}
		if len(out) > before {
			g.after[to] = r.Subject
		}
	}
	return out
}

// Sent records that recs went to member to.
func (g *Gossip) Sent(to peer.ID, recs []Record) {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := g.sent[to]
	if m == nil {
		m = map[peer.ID]uint64{}
		g.sent[to] = m
	}
	for _, r := range recs {
		if r.Seq > m[r.Subject] {
			m[r.Subject] = r.Seq
		}
	}
	g.last[to] = g.now()
}

// Forget drops what member to was sent (its connection went away, or it
// is no longer a member): the next exchange sends everything again.
func (g *Gossip) Forget(to peer.ID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.sent, to)
	delete(g.last, to)
	delete(g.after, to)
}

// ErrMalformed is returned by Decode for a body that does not parse.
var ErrMalformed = errors.New("pex: malformed exchange")

// Encode builds an exchange body.
func Encode(recs []Record) []byte {
	var out []byte
	for _, r := range recs {
		out = binary.AppendUvarint(out, uint64(len(r.Signed)))
		out = append(out, r.Signed...)
	}
	return out
}

// Decode splits an exchange body into signed records (not yet verified).
func Decode(body []byte) ([][]byte, error) {
	if len(body) > MaxBody {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrMalformed, len(body), MaxBody)
	}
	var out [][]byte
	for len(body) > 0 {
		n, k := binary.Uvarint(body)
		if k <= 0 || n == 0 || n > uint64(len(body)-k) {
			return nil, fmt.Errorf("%w: bad record length", ErrMalformed)
		}
		if len(out) == MaxRecords {
			return nil, fmt.Errorf("%w: more than %d records", ErrMalformed, MaxRecords)
		}
		out = append(out, body[k:k+int(n)])
		body = body[k+int(n):]
	}
	return out, nil
}
