package circle

import (
	"bytes"
	"container/heap"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/bits"
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
	order   []*Op  // canonical order
	counted bitset // by canonical index: the ops that take effect (see dag.evaluate)
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
	l := &Log{circle: o.Circle, genesis: o.hash, ops: map[Hash]*Op{o.hash: o}}
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

// Precedes reports whether operation a is a causal ancestor of b: b's
// author had seen a when it signed b.
func (l *Log) Precedes(a, b Hash) bool {
	i, ok := l.dag.index[a]
	j, ok2 := l.dag.index[b]
	return ok && ok2 && l.dag.anc[j].has(i)
}

// Missing answers an op request: the wanted operations this log holds and
// their ancestors that are not ancestors of (or among) the asker's heads,
// parents first, at most limit of them (the asker asks again for the rest).
func (l *Log) Missing(want, have []Hash, limit int) [][]byte {
	n := len(l.order)
	known := newBitset(n)
	for _, h := range have {
		if i, ok := l.dag.index[h]; ok {
			known.set(i)
			known.or(l.dag.anc[i])
		}
	}
	send := newBitset(n)
	for _, h := range want {
		if i, ok := l.dag.index[h]; ok {
			send.set(i)
			send.or(l.dag.anc[i])
		}
	}
	var out [][]byte
	send.each(func(i int) bool {
		if !known.has(i) {
			out = append(out, l.order[i].raw)
		}
		return len(out) < limit
	})
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
	r := l.dag.fold(l.dag.evaluate(l.dag.anc[i]), i)
	r.computeEpoch()
	return r, true
}

// Counts reports whether an operation takes effect in the merged roster:
// false for one the log holds but the merge rule voids (unauthorized, or
// concurrent with a revocation of its author; see doc.go, "Merge").
func (l *Log) Counts(h Hash) bool {
	i, ok := l.dag.index[h]
	return ok && l.counted.has(i)
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
func (b bitset) has(i int) bool { return i/64 < len(b) && b[i/64]&(1<<(uint(i)%64)) != 0 }
func (b bitset) or(c bitset) {
	for i := range b {
		b[i] |= c[i]
	}
}
func (b bitset) and(c bitset) bitset {
	out := make(bitset, len(b))
	for i := range b {
		out[i] = b[i] & c[i]
	}
	return out
}
func (b bitset) equal(c bitset) bool { return slices.Equal(b, c) }

// each calls f for every index in b, ascending.
func (b bitset) each(f func(int) bool) {
	for w, x := range b {
		for x != 0 {
			i := w*64 + bits.TrailingZeros64(x)
			if !f(i) {
				return
			}
			x &= x - 1
		}
	}
}

// dag is the log in canonical order with ancestor and descendant sets and
// the revocations the merge rule looks up.
type dag struct {
	ops   []*Op
	index map[Hash]int
	anc   []bitset // strict ancestors
	desc  []bitset // strict descendants
	// Revocations of a peer's authority, as op indexes. removals: every
	// remove op of the peer (by an admin or by itself); demotions: role
	// ops making it a plain member. Admin authority ends with either,
	// membership only with a removal.
	removals  map[peer.ID][]int
	demotions map[peer.ID][]int
	// about lists the ops that decide a peer's membership and role: its
	// create, adds, removals and role changes.
	about map[peer.ID][]int
	// cycle[i] names the revocation cycle op i belongs to (revocations that
	// revoke each other's authors concurrently), -1 for none.
	cycle []int
	// settled is set when an evaluation had to settle an oscillation.
	settled bool
}

func (d *dag) concurrent(i, j int) bool { return i != j && !d.anc[i].has(j) && !d.anc[j].has(i) }

// needsAdmin reports whether an op takes admin authority; the others (a
// member leaving, a member publishing its own prekey) take membership.
func needsAdmin(o *Op) bool {
	switch o.Kind {
	case OpCreate, OpPrekey:
		return false
	case OpRemove:
		return o.Target != o.Author
	}
	return true
}

// isRevocation reports whether an op ends someone's authority.
func isRevocation(o *Op) bool {
	return o.Kind == OpRemove || o.Kind == OpRole && o.Role == RoleMember
}

// revocations returns the ops that end the authority op i needs.
func (d *dag) revocations(i int) [][]int {
	o := d.ops[i]
	if needsAdmin(o) {
		return [][]int{d.removals[o.Author], d.demotions[o.Author]}
	}
	return [][]int{d.removals[o.Author]}
}

func newDAG(order []*Op) *dag {
	n := len(order)
	d := &dag{ops: order, index: make(map[Hash]int, n), anc: make([]bitset, n), desc: make([]bitset, n),
		removals: map[peer.ID][]int{}, demotions: map[peer.ID][]int{}, about: map[peer.ID][]int{}, cycle: make([]int, n)}
	for i, o := range order {
		d.index[o.hash] = i
		d.anc[i] = newBitset(n)
		d.desc[i] = newBitset(n)
		for _, p := range o.Parents {
			j := d.index[p]
			d.anc[i].set(j)
			d.anc[i].or(d.anc[j])
		}
		d.anc[i].each(func(j int) bool { d.desc[j].set(i); return true })
		switch {
		case o.Kind == OpRemove:
			d.removals[o.Target] = append(d.removals[o.Target], i)
		case o.Kind == OpRole && o.Role == RoleMember:
			d.demotions[o.Target] = append(d.demotions[o.Target], i)
		}
		if o.Kind != OpPrekey && o.Target != "" {
			d.about[o.Target] = append(d.about[o.Target], i)
		}
	}
	d.findCycles()
	return d
}

// findCycles marks revocation cycles: strongly connected components of the
// graph where r → t when revocation r ends the authority of t's author and
// the two are concurrent (A removes B while B removes A; or A → B → C → A).
// Tarjan's algorithm.
func (d *dag) findCycles() {
	n := len(d.ops)
	for i := range d.cycle {
		d.cycle[i] = -1
	}
	// successors of t: the revocations that attack it.
	attackers := func(t int) []int {
		var out []int
		for _, set := range d.revocations(t) {
			for _, r := range set {
				if d.concurrent(r, t) {
					out = append(out, r)
				}
			}
		}
		return out
	}
	index, low := make([]int, n), make([]int, n)
	onStack := make([]bool, n)
	for i := range index {
		index[i] = -1
	}
	var stack []int
	next, comp := 0, 0
	var visit func(v int)
	visit = func(v int) {
		index[v], low[v] = next, next
		next++
		stack = append(stack, v)
		onStack[v] = true
		for _, w := range attackers(v) {
			if index[w] < 0 {
				visit(w)
				low[v] = min(low[v], low[w])
			} else if onStack[w] {
				low[v] = min(low[v], index[w])
			}
		}
		if low[v] != index[v] {
			return
		}
		var members []int
		for {
			w := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			onStack[w] = false
			members = append(members, w)
			if w == v {
				break
			}
		}
		if len(members) > 1 {
			for _, w := range members {
				d.cycle[w] = comp
			}
			comp++
		}
	}
	for i, o := range d.ops {
		if isRevocation(o) && index[i] < 0 {
			visit(i)
		}
	}
}

// verdict is one pass of the merge rule over a set of ops: which count, and
// whose author was an admin at that op.
type verdict struct {
	counted bitset
	admin   bitset
}

// evaluate applies the merge rule (doc.go, "Merge") to the down-closed op set
// s and returns the ops that count. The rule refers to itself (whether an op
// counts depends on whether its author's revocations count), so it is
// computed as a fixed point: start from every op judged by its causal past
// alone, then re-judge every op against the previous verdict until nothing
// changes. Every replica holding the same ops runs the same computation, so
// they agree whatever order the ops arrived in.
func (d *dag) evaluate(s bitset) bitset {
	prev := d.judge(s, verdict{}, false)
	seen := []verdict{prev}
	for range 2*len(d.ops) + 8 {
		next := d.judge(s, prev, true)
		if next.counted.equal(prev.counted) && next.admin.equal(prev.admin) {
			return next.counted
		}
		for k, v := range seen {
			if v.counted.equal(next.counted) && v.admin.equal(next.admin) {
				return d.settle(seen[k:])
			}
		}
		seen = append(seen, next)
		prev = next
	}
	return d.settle(seen)
}

// settle decides a log whose verdicts oscillate (no honest device makes
// one; it takes revocations crafted against each other in a way the cycle
// rule does not cover): an op counts if it counts in every verdict of the
// oscillation, a revocation if it counts in any. Remove-wins.
func (d *dag) settle(vs []verdict) bitset {
	d.settled = true
	out := slices.Clone(vs[0].counted)
	for _, v := range vs[1:] {
		for w := range out {
			out[w] &= v.counted[w]
		}
	}
	for _, v := range vs {
		v.counted.each(func(i int) bool {
			if isRevocation(d.ops[i]) {
				out.set(i)
			}
			return true
		})
	}
	return out
}

// judge decides each op of s in canonical order. Its author's authority is
// read from the roster of the ops already counted in its causal past. With
// cuts, an op is also void when a revocation of its author that counted in
// prev is concurrent with it, unless the two revoke each other (a cycle) or
// an admin in good standing built on the op without knowing that
// revocation.
func (d *dag) judge(s bitset, prev verdict, cuts bool) verdict {
	n := len(d.ops)
	v := verdict{counted: newBitset(n), admin: newBitset(n)}
	for i, o := range d.ops {
		if !s.has(i) {
			continue
		}
		if o.Kind == OpCreate {
			v.counted.set(i)
			v.admin.set(i)
			continue
		}
		member, admin := d.standing(v.counted, i, o.Author)
		if admin {
			v.admin.set(i)
		}
		if !admin && (!member || needsAdmin(o)) {
			continue
		}
		if cuts && d.cut(i, prev, v.counted) {
			continue
		}
		v.counted.set(i)
	}
	return v
}

// standing reports whether p is a member, and an admin, in the roster of
// the ops counted in t that are causal ancestors of op i: what fold of that
// set would say about p, computed from the ops about p alone.
func (d *dag) standing(t bitset, i int, p peer.ID) (member, admin bool) {
	past := func(j int) bool { return t.has(j) && d.anc[i].has(j) }
	role := Role(0)
	for _, j := range d.about[p] {
		if j >= i {
			break
		}
		if !past(j) {
			continue
		}
		o := d.ops[j]
		concurrent := func(set []int) bool {
			for _, r := range set {
				if past(r) && d.concurrent(r, j) {
					return true
				}
			}
			return false
		}
		switch o.Kind {
		case OpCreate:
			member, role = true, RoleAdmin
		case OpAdd:
			if concurrent(d.removals[p]) || member {
				continue
			}
			member, role = true, o.Role
			if role == RoleAdmin && concurrent(d.demotions[p]) {
				role = RoleMember
			}
		case OpRemove:
			member = false
		case OpRole:
			if !member || concurrent(d.removals[p]) || o.Role == RoleAdmin && concurrent(d.demotions[p]) {
				continue
			}
			role = o.Role
		}
	}
	return member, member && role == RoleAdmin
}

// cut reports whether op i is void because a counted revocation of its
// author is concurrent with it. counted holds this pass's verdicts so far
// (every ancestor of i).
func (d *dag) cut(i int, prev verdict, counted bitset) bool {
	for _, set := range d.revocations(i) {
		for _, r := range set {
			if !prev.counted.has(r) || !d.concurrent(r, i) {
				continue
			}
			if d.cycle[r] >= 0 && d.cycle[r] == d.cycle[i] {
				continue // revocations in a cycle all take effect: remove-wins
			}
			if d.endorsed(i, r, prev, counted) {
				continue
			}
			return true
		}
	}
	return false
}

// endorsed reports whether another admin, in good standing, built on op i
// without knowing revocation r: then i was part of the circle's history
// before r was, and r does not undo it. The remover's own op counts as
// such an endorsement when it saw i. The endorser must have been an admin
// before i or before r (in the roster of either's causal past), so its
// authority does not come from i, from what i leads to, or from other ops
// concurrent with r — an op is never endorsed by the authority it grants,
// and void ops cannot endorse each other. Nor is it the one i revokes,
// whose standing depends on i.
func (d *dag) endorsed(i, r int, prev verdict, counted bitset) bool {
	o := d.ops[i]
	found := false
	d.desc[i].each(func(q int) bool {
		qa := d.ops[q].Author
		if !prev.counted.has(q) || !prev.admin.has(q) || qa == o.Author || isRevocation(o) && qa == o.Target ||
			q == r || d.anc[q].has(r) {
			return true
		}
		if _, admin := d.standing(counted, i, qa); admin {
			found = true
			return false
		}
		if _, admin := d.standing(prev.counted, r, qa); admin {
			found = true
			return false
		}
		return true
	})
	return found
}

// revokedConcurrently reports whether one of the ops in set, counted in t,
// is concurrent with op i.
func (d *dag) revokedConcurrently(t bitset, set []int, i int) bool {
	for _, r := range set {
		if t.has(r) && d.concurrent(r, i) {
			return true
		}
	}
	return false
}

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
	d := newDAG(order)
	all := newBitset(n)
	for i := range order {
		all.set(i)
	}
	l.counted = d.evaluate(all)
	r := d.fold(l.counted, n)
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

// fold computes the roster of the counted ops t (all below index limit) in
// canonical order, with remove-wins on targets: an add, role change or
// prekey of X concurrent with a counted removal of X is void, and so is a
// promotion of X concurrent with a counted demotion of X.
func (d *dag) fold(t bitset, limit int) *Roster {
	r := &Roster{members: map[peer.ID]Member{}, channels: map[string]Channel{}}
	for i := range limit {
		if !t.has(i) {
			continue
		}
		o := d.ops[i]
		switch o.Kind {
		case OpCreate:
			r.Circle, r.Name, r.History = o.Circle, o.CircleName, o.History
			r.members[o.Target] = Member{Peer: o.Target, Prekey: o.Prekey, Name: o.Name, Role: RoleAdmin, Since: o.hash}
		case OpAdd:
			if d.revokedConcurrently(t, d.removals[o.Target], i) {
				continue
			}
			m, ok := r.members[o.Target]
			if !ok {
				m = Member{Peer: o.Target, Prekey: o.Prekey, Role: o.Role, Since: o.hash}
				if m.Role == RoleAdmin && d.revokedConcurrently(t, d.demotions[o.Target], i) {
					m.Role = RoleMember
				}
			} else if o.Prekey.Created.After(m.Prekey.Created) {
				// An add of a member (a join retried with a new prekey)
				// updates its name and prekey, never its role or since.
				m.Prekey = o.Prekey
			}
			m.Name = o.Name
			r.members[o.Target] = m
		case OpRemove:
			delete(r.members, o.Target)
			r.removals = append(r.removals, o.hash)
		case OpRole:
			m, ok := r.members[o.Target]
			if !ok || d.revokedConcurrently(t, d.removals[o.Target], i) {
				continue
			}
			if o.Role == RoleAdmin && d.revokedConcurrently(t, d.demotions[o.Target], i) {
				continue
			}
			m.Role = o.Role
			r.members[o.Target] = m
		case OpPrekey:
			m, ok := r.members[o.Author]
			if !ok || d.revokedConcurrently(t, d.removals[o.Author], i) {
				continue
			}
			// The newest prekey its owner signed wins: the owner's own
			// ordering of its own keys, whatever order the ops merge in.
			if o.Prekey.Created.After(m.Prekey.Created) {
				m.Prekey = o.Prekey
				r.members[o.Author] = m
			}
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
