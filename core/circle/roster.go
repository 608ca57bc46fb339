package circle

import (
	"bytes"
	"container/heap"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Errors from the roster log.
var (
	// ErrMissingParent means an operation refers to operations this log does
	// not hold yet; keep it and add it again after its parents.
	ErrMissingParent = errors.New("circle: roster operation refers to unknown parents")
	ErrWrongCircle   = errors.New("circle: roster operation belongs to another circle")
	ErrNotGenesis    = errors.New("circle: the first roster operation must be a create op")
	// ErrUnauthorized is returned by the local helpers that author an
	// operation the local device may not sign.
	ErrUnauthorized = errors.New("circle: not allowed by the roster")
)

// Log is a circle's roster: a hash-chained DAG of signed operations. It is
// not safe for concurrent use; Circle serializes access.
type Log struct {
	circle  ID
	genesis Hash
	ops     map[Hash]*Op
	auth    map[Hash]bool // authorization of each op, decided by its causal past alone
	order   []*Op         // canonical order
	roster  *Roster
	dag     *dag
}

// NewLog starts a log from its genesis (create) operation.
func NewLog(genesis []byte) (*Log, error) {
	o, err := ParseOp(genesis)
	if err != nil {
		return nil, err
	}
	if o.Kind != OpCreate {
		return nil, ErrNotGenesis
	}
	l := &Log{circle: o.Circle, genesis: o.hash, ops: map[Hash]*Op{o.hash: o}, auth: map[Hash]bool{o.hash: true}}
	l.recompute()
	return l, nil
}

// VerifyLog rebuilds and verifies a roster from its operations, in any order:
// every signature, every parent link and every authorization. It is what a
// member runs on a log it received.
func VerifyLog(ops [][]byte) (*Log, error) {
	var parsed []*Op
	var genesis []byte
	for _, raw := range ops {
		o, err := ParseOp(raw)
		if err != nil {
			return nil, err
		}
		if o.Kind == OpCreate {
			if genesis != nil && !bytes.Equal(genesis, raw) {
				return nil, fmt.Errorf("%w: two create ops", ErrMalformedOp)
			}
			genesis = raw
			continue
		}
		parsed = append(parsed, o)
	}
	if genesis == nil {
		return nil, ErrNotGenesis
	}
	l, err := NewLog(genesis)
	if err != nil {
		return nil, err
	}
	if err := l.addParsed(parsed); err != nil {
		return nil, err
	}
	return l, nil
}

// Add verifies one operation and adds it. It reports false if the log
// already held it. ErrMissingParent means it must wait for its parents.
func (l *Log) Add(raw []byte) (bool, error) {
	o, err := ParseOp(raw)
	if err != nil {
		return false, err
	}
	if _, ok := l.ops[o.hash]; ok {
		return false, nil
	}
	if err := l.addParsed([]*Op{o}); err != nil {
		return false, err
	}
	return true, nil
}

func (l *Log) addParsed(in []*Op) error {
	pending := make(map[Hash]*Op, len(in))
	for _, o := range in {
		if o.Circle != l.circle {
			return fmt.Errorf("%w: %s, not %s", ErrWrongCircle, o.Circle, l.circle)
		}
		if o.Kind == OpCreate {
			return fmt.Errorf("%w: a second create op", ErrMalformedOp)
		}
		if _, ok := l.ops[o.hash]; !ok {
			pending[o.hash] = o
		}
	}
	// Insert in causal order; whatever is left has missing parents.
	for progress := true; progress && len(pending) > 0; {
		progress = false
		for h, o := range pending {
			ready := true
			for _, p := range o.Parents {
				if _, ok := l.ops[p]; !ok {
					ready = false
					break
				}
			}
			if !ready {
				continue
			}
			l.ops[h] = o
			delete(pending, h)
			progress = true
		}
	}
	if len(pending) > 0 {
		for _, o := range pending {
			for _, p := range o.Parents {
				if _, ok := l.ops[p]; !ok {
					// undo: the log holds only complete histories.
					for h := range pending {
						delete(l.ops, h)
					}
					l.recompute()
					return fmt.Errorf("%w: op %s needs %s", ErrMissingParent, o.hash, p)
				}
			}
		}
	}
	l.recompute()
	return nil
}

// Has reports whether the log holds an operation.
func (l *Log) Has(h Hash) bool { _, ok := l.ops[h]; return ok }

// Len is the number of operations.
func (l *Log) Len() int { return len(l.ops) }

// Ops returns every operation's wire bytes in canonical order (parents
// first), for storage and for sending to a member.
func (l *Log) Ops() [][]byte {
	out := make([][]byte, len(l.order))
	for i, o := range l.order {
		out[i] = o.raw
	}
	return out
}

// Op returns an operation by hash.
func (l *Log) Op(h Hash) (*Op, bool) { o, ok := l.ops[h]; return o, ok }

// Roster is the current verified roster.
func (l *Log) Roster() *Roster { return l.roster }

// RosterBefore is the roster of an operation's causal past: the roster its
// author saw when signing it.
func (l *Log) RosterBefore(h Hash) (*Roster, bool) {
	i, ok := l.dag.index[h]
	if !ok {
		return nil, false
	}
	r := l.dag.fold(l.dag.anc[i])
	r.computeEpoch()
	return r, true
}

// opHeap orders ready operations by hash for the canonical topological sort.
type opHeap []*Op

func (h opHeap) Len() int           { return len(h) }
func (h opHeap) Less(i, j int) bool { return bytes.Compare(h[i].hash[:], h[j].hash[:]) < 0 }
func (h opHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *opHeap) Push(x any)        { *h = append(*h, x.(*Op)) }
func (h *opHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

type bitset []uint64

func newBitset(n int) bitset    { return make(bitset, (n+63)/64) }
func (b bitset) set(i int)      { b[i/64] |= 1 << (uint(i) % 64) }
func (b bitset) has(i int) bool { return b[i/64]&(1<<(uint(i)%64)) != 0 }
func (b bitset) or(c bitset) {
	for i := range b {
		b[i] |= c[i]
	}
}

// dag is the log in canonical order with ancestor sets.
type dag struct {
	ops     []*Op
	index   map[Hash]int
	anc     []bitset // strict ancestors
	removes map[peer.ID][]int
	auth    []bool
}

func (d *dag) concurrent(i, j int) bool { return i != j && !d.anc[i].has(j) && !d.anc[j].has(i) }

func (l *Log) recompute() {
	// Canonical order: topological, ties broken by smallest hash.
	children := make(map[Hash][]*Op, len(l.ops))
	indeg := make(map[Hash]int, len(l.ops))
	for h, o := range l.ops {
		indeg[h] = len(o.Parents)
		for _, p := range o.Parents {
			children[p] = append(children[p], o)
		}
	}
	h := &opHeap{l.ops[l.genesis]}
	order := make([]*Op, 0, len(l.ops))
	for h.Len() > 0 {
		o := heap.Pop(h).(*Op)
		order = append(order, o)
		for _, c := range children[o.hash] {
			indeg[c.hash]--
			if indeg[c.hash] == 0 {
				heap.Push(h, c)
			}
		}
	}
	l.order = order
	n := len(order)
	d := &dag{ops: order, index: make(map[Hash]int, n), anc: make([]bitset, n), removes: map[peer.ID][]int{}, auth: make([]bool, n)}
	for i, o := range order {
		d.index[o.hash] = i
		d.anc[i] = newBitset(n)
		for _, p := range o.Parents {
			j := d.index[p]
			d.anc[i].set(j)
			d.anc[i].or(d.anc[j])
		}
		if o.Kind == OpRemove {
			d.removes[o.Target] = append(d.removes[o.Target], i)
		}
	}
	// Authorization depends only on an op's causal past, so it is computed
	// once per op and cached.
	for i, o := range order {
		if a, ok := l.auth[o.hash]; ok {
			d.auth[i] = a
			continue
		}
		past := d.fold(d.anc[i])
		a := past.IsAdmin(o.Author)
		if o.Kind == OpRemove && o.Target == o.Author {
			_, a = past.members[o.Author] // anyone may leave
		}
		d.auth[i] = a
		l.auth[o.hash] = a
	}
	all := newBitset(n)
	for i := range order {
		all.set(i)
	}
	r := d.fold(all)
	// Heads: ops that are nobody's parent.
	isParent := map[Hash]bool{}
	for _, o := range order {
		for _, p := range o.Parents {
			isParent[p] = true
		}
	}
	for _, o := range order {
		if !isParent[o.hash] {
			r.Heads = append(r.Heads, o.hash)
		}
	}
	slices.SortFunc(r.Heads, func(a, b Hash) int { return bytes.Compare(a[:], b[:]) })
	r.computeEpoch()
	l.roster = r
	l.dag = d
}

// removedConcurrently reports whether an authorized remove of p in set s is
// concurrent with op i.
func (d *dag) removedConcurrently(s bitset, p peer.ID, i int) bool {
	for _, r := range d.removes[p] {
		if s.has(r) && d.auth[r] && d.concurrent(r, i) {
			return true
		}
	}
	return false
}

// fold computes the roster of the down-closed op set s (see doc.go, "Merge").
func (d *dag) fold(s bitset) *Roster {
	r := &Roster{members: map[peer.ID]Member{}, channels: map[string]Channel{}}
	removedBy := map[peer.ID][]int{}
	for i, o := range d.ops {
		if !s.has(i) || !d.auth[i] {
			continue
		}
		if o.Kind == OpCreate {
			r.Circle, r.Name, r.History = o.Circle, o.CircleName, o.History
			r.members[o.Target] = Member{Peer: o.Target, Prekey: o.Prekey, Name: o.Name, Role: RoleAdmin, Since: o.hash}
			continue
		}
		if _, ok := r.members[o.Author]; !ok {
			// The author left the folded roster: only a removal concurrent
			// with this op excuses that (its own removal races this op).
			excused := false
			for _, j := range removedBy[o.Author] {
				if d.concurrent(j, i) {
					excused = true
				}
			}
			if !excused {
				continue
			}
		}
		if o.Kind != OpRemove && d.removedConcurrently(s, o.Author, i) {
			continue // remove wins over the removed author's concurrent acts
		}
		switch o.Kind {
		case OpAdd:
			if d.removedConcurrently(s, o.Target, i) {
				continue // remove wins over a concurrent add
			}
			m := Member{Peer: o.Target, Prekey: o.Prekey, Name: o.Name, Role: o.Role, Since: o.hash}
			if old, ok := r.members[o.Target]; ok {
				m.Since = old.Since
			}
			r.members[o.Target] = m
		case OpRemove:
			delete(r.members, o.Target)
			removedBy[o.Target] = append(removedBy[o.Target], i)
			r.removals = append(r.removals, o.hash)
		case OpRole:
			m, ok := r.members[o.Target]
			if !ok || d.removedConcurrently(s, o.Target, i) {
				continue
			}
			m.Role = o.Role
			r.members[o.Target] = m
		case OpChannelSet:
			r.channels[o.Channel.ID] = o.Channel
		case OpChannelRemove:
			delete(r.channels, o.Channel.ID)
		case OpSettings:
			if o.CircleName != "" {
				r.Name = o.CircleName
			}
			r.History = o.History
		}
	}
	return r
}

// Roster is a verified roster state.
type Roster struct {
	Circle  ID
	Name    string
	History bool   // new members may read history from before they joined
	Epoch   Epoch  // see computeEpoch
	Heads   []Hash // current heads of the log, sorted; parents of the next op

	members  map[peer.ID]Member
	channels map[string]Channel
	removals []Hash
}

// computeEpoch sets Epoch = SHA-256("remora/v1/epoch" ‖ circle ID ‖ for each
// member in peer ID order: uvarint len ‖ peer ID ‖ since-hash ‖ 0xff ‖ the
// hash of each applied remove op, sorted). Roles, channels and settings do
// not change the epoch; any change of who holds the keys does. The removals
// are included so an epoch never repeats: removing the newest member would
// otherwise return to the epoch before it joined, whose secret it knew.
func (r *Roster) computeEpoch() {
	h := sha256.New()
	h.Write([]byte("remora/v1/epoch"))
	h.Write(r.Circle[:])
	for _, m := range r.Members() {
		h.Write(uv(uint64(len(m.Peer))))
		h.Write([]byte(m.Peer))
		h.Write(m.Since[:])
	}
	h.Write([]byte{0xff})
	for _, x := range r.Removals() {
		h.Write(x[:])
	}
	copy(r.Epoch[:], h.Sum(nil))
}

// Member returns a member by peer ID.
func (r *Roster) Member(p peer.ID) (Member, bool) { m, ok := r.members[p]; return m, ok }

// IsMember reports whether p is in the roster.
func (r *Roster) IsMember(p peer.ID) bool { _, ok := r.members[p]; return ok }

// IsAdmin reports whether p is an admin.
func (r *Roster) IsAdmin(p peer.ID) bool { m, ok := r.members[p]; return ok && m.Role == RoleAdmin }

// Members returns the members sorted by peer ID.
func (r *Roster) Members() []Member {
	out := make([]Member, 0, len(r.members))
	for _, m := range r.members {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Member) int { return bytes.Compare([]byte(a.Peer), []byte(b.Peer)) })
	return out
}

// Len is the number of members.
func (r *Roster) Len() int { return len(r.members) }

// Channels returns the channel descriptions sorted by ID.
func (r *Roster) Channels() []Channel {
	out := make([]Channel, 0, len(r.channels))
	for _, c := range r.channels {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Channel) int { return bytes.Compare([]byte(a.ID), []byte(b.ID)) })
	return out
}

// Removals returns the hashes of applied remove operations, sorted. Each
// carries a fresh secret contribution to the epoch secret (see secret.go).
func (r *Roster) Removals() []Hash {
	out := slices.Clone(r.removals)
	slices.SortFunc(out, func(a, b Hash) int { return bytes.Compare(a[:], b[:]) })
	return slices.Compact(out)
}
