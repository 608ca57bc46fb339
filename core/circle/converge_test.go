package circle

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"testing/cryptotest"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/remora-p2p/remora/core/envelope"
	"github.com/remora-p2p/remora/core/identity"
)

// simMsg is one message in flight: a roster operation or a key message
// (op request, sender key, contribution, key request), carried (as the
// node does, in a direct envelope) from one device to another, or a
// sender-key hand-out broadcast under an older epoch (under set), which
// reaches a device only if it holds the chain it is sealed with.
type simMsg struct {
	from  peer.ID
	op    []byte
	req   *KeyMsg
	under Epoch
}

type simDev struct {
	name  string
	keys  *identity.Keyring
	c     *Circle // nil until added
	inbox []simMsg
	group int // partition
}

// sim is a circle of devices that author roster operations on their own
// view and exchange them the way the node does: an author sends its op to
// the members it knows; a receiver applies ops from current members only
// (the envelope gate), keeps those whose parents are missing and asks the
// sender for them; an adder forwards ops its new member missed. Delivery
// order is random, messages are duplicated, and partitions hold messages
// back until they heal.
type sim struct {
	t     *testing.T
	rng   *rand.Rand
	clock *clock
	devs  []*simDev
	byID  map[peer.ID]*simDev
	added map[peer.ID]bool // devices ever added: never added again
	stats simStats
	keys  bool // carry sender keys, contributions and key requests too
}

type simStats struct {
	ops, waited, duplicates, partitions int
	handOuts, handOutsClosed            int // broadcast hand-outs opened; dropped since a removal closed their epoch
}

func newSim(t *testing.T, seed uint64, n int) *sim {
	t.Helper()
	s := &sim{t: t, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		clock: &clock{time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}, byID: map[peer.ID]*simDev{}, added: map[peer.ID]bool{}}
	for i := range n {
		d := &simDev{name: fmt.Sprintf("d%d", i), keys: newKeyring(t, s.clock)}
		s.devs = append(s.devs, d)
		s.byID[d.keys.Identity().PeerID()] = d
	}
	c, _, err := Create(s.devs[0].keys, "sim", "d0", false, opts(s.clock))
	if err != nil {
		t.Fatal(err)
	}
	s.devs[0].c = c
	s.added[c.Self()] = true
	return s
}

func (s *sim) pick(n int) int { return s.rng.IntN(n) }

// members returns the devices d's view counts as members, other than d.
func (s *sim) others(d *simDev, r *Roster) []*simDev {
	var out []*simDev
	for _, m := range r.Members() {
		if o := s.byID[m.Peer]; o != d {
			out = append(out, o)
		}
	}
	return out
}

// act makes a random device author a random operation its view allows.
func (s *sim) act() {
	d := s.devs[s.pick(len(s.devs))]
	if d.c == nil {
		return
	}
	r := d.c.Roster()
	me, ok := r.Member(d.c.Self())
	if !ok {
		return
	}
	var others []*simDev
	for _, o := range s.others(d, r) {
		if o != s.devs[0] {
			others = append(others, o)
		}
	}
	var u *Update
	var err error
	var newDev *simDev
	switch k := s.pick(10); {
	case me.Role != RoleAdmin && k < 8 || k == 9:
		s.clock.t = s.clock.t.Add(8 * 24 * time.Hour)
		if _, err := d.keys.Rotate(); err != nil {
			s.t.Fatal(err)
		}
		u, err = d.c.PublishPrekey()
	case me.Role != RoleAdmin:
		if d == s.devs[0] {
			return
		}
		u, err = d.c.RemoveMember(d.c.Self())
	case k < 3:
		var fresh []*simDev
		for _, o := range s.devs {
			if !s.added[o.keys.Identity().PeerID()] {
				fresh = append(fresh, o)
			}
		}
		if len(fresh) == 0 {
			return
		}
		newDev = fresh[s.pick(len(fresh))]
		role := RoleMember
		if s.pick(3) == 0 {
			role = RoleAdmin
		}
		s.added[newDev.keys.Identity().PeerID()] = true
		u, err = d.c.AddMember(newDev.keys.Identity().PeerID(), newDev.keys.Current(), newDev.name, role)
	case k < 5 && len(others) > 0:
		// Admins removing admins is where removals conflict: prefer it.
		victims := others
		var admins []*simDev
		for _, o := range others {
			if r.IsAdmin(o.keys.Identity().PeerID()) {
				admins = append(admins, o)
			}
		}
		if len(admins) > 0 && s.pick(2) == 0 {
			victims = admins
		}
		u, err = d.c.RemoveMember(victims[s.pick(len(victims))].keys.Identity().PeerID())
	case k < 7 && len(others) > 0:
		o := others[s.pick(len(others))]
		m, _ := r.Member(o.keys.Identity().PeerID())
		u, err = d.c.SetRole(m.Peer, RoleAdmin+RoleMember-m.Role)
	case k < 8:
		u, err = d.c.SetChannel(Channel{ID: fmt.Sprint("ch", s.pick(3)), Kind: "dir", Address: fmt.Sprint("/srv/", s.pick(100))})
	default:
		if d == s.devs[0] {
			return
		}
		u, err = d.c.RemoveMember(d.c.Self())
	}
	if err != nil {
		s.t.Fatalf("%s authors: %v", d.name, err)
	}
	if u == nil || u.Op == nil {
		return
	}
	s.stats.ops++
	if newDev != nil {
		// The welcome: the new device starts from the adder's log.
		l, err := VerifyLog(d.c.Ops())
		if err != nil {
			s.t.Fatal(err)
		}
		o := opts(s.clock)
		o.fill()
		newDev.c = newCircle(newDev.keys, l, o)
		if s.keys {
			// Join's start: its epoch, its chain, its hand-outs.
			nu := &Update{}
			newDev.c.enterEpoch(nu, nil)
			s.route(newDev, nu.Send)
		}
	}
	// The author sends its op to the members it knows (node.afterUpdate).
	for _, o := range s.others(d, d.c.Roster()) {
		if o != newDev {
			o.inbox = append(o.inbox, simMsg{from: d.c.Self(), op: u.Op.Raw()})
		}
	}
	s.route(d, u.Send)
}

// route queues what a circle asked to send: roster ops, key messages and
// broadcast hand-outs (one copy per member it names).
func (s *sim) route(from *simDev, out []Outgoing) {
	for _, o := range out {
		m := o.Msg
		switch {
		case o.Roster != nil:
			s.byID[o.To].inbox = append(s.byID[o.To].inbox, simMsg{from: from.c.Self(), op: o.Roster})
		case !s.keys && o.Msg.Kind != MsgOpRequest:
		case len(o.Broadcast) > 0:
			for _, p := range o.Broadcast {
				s.byID[p].inbox = append(s.byID[p].inbox, simMsg{from: from.c.Self(), req: &m, under: o.Epoch})
			}
		default:
			s.byID[o.To].inbox = append(s.byID[o.To].inbox, simMsg{from: from.c.Self(), req: &m})
		}
	}
}

// handOut is what the node does with a broadcast hand-out: seal it with
// HandOutKey (closed: the entry is dropped) and let a member open it if it
// holds the chain it is sealed with (else it is held).
func (s *sim) handOut(d *simDev, m simMsg) (closed, opens bool) {
	sk, err := s.byID[m.from].c.HandOutKey(m.under)
	if errors.Is(err, ErrHandOutClosed) {
		return true, false
	}
	if err != nil {
		return false, false
	}
	keys, _ := d.c.MessageKeys(d.c.ID().EnvelopeID(), envelope.Epoch(m.under), m.from)
	return false, slices.ContainsFunc(keys, func(k []byte) bool { return bytes.Equal(k, sk.Key[:]) })
}

func (s *sim) deliverable(d *simDev, m simMsg) bool {
	if d.c == nil || s.byID[m.from].group != d.group {
		return false
	}
	// The envelope gate: only a current member's envelope opens.
	if !d.c.Roster().IsMember(m.from) {
		return false
	}
	if m.under != (Epoch{}) {
		closed, opens := s.handOut(d, m)
		return closed || opens
	}
	return true
}

// deliver hands one random deliverable message to its device; it reports
// false when none is deliverable.
func (s *sim) deliver() bool {
	type slot struct {
		d *simDev
		i int
	}
	var ready []slot
	for _, d := range s.devs {
		for i, m := range d.inbox {
			if s.deliverable(d, m) {
				ready = append(ready, slot{d, i})
			}
		}
	}
	if len(ready) == 0 {
		return false
	}
	sl := ready[s.pick(len(ready))]
	d, m := sl.d, sl.d.inbox[sl.i]
	if s.pick(5) == 0 {
		s.stats.duplicates++ // delivered now and again later
	} else {
		d.inbox = slices.Delete(d.inbox, sl.i, sl.i+1)
	}
	if m.req != nil {
		if closed, _ := s.handOut(d, m); m.under != (Epoch{}) && closed {
			s.stats.handOutsClosed++
			return true
		}
		if m.under != (Epoch{}) {
			s.stats.handOuts++
		}
		out, err := d.c.HandleKeyMsg(m.from, *m.req)
		if err == nil {
			s.route(d, out)
		}
		return true
	}
	u, err := d.c.ApplyOpFrom(m.from, m.op)
	if err != nil {
		s.t.Fatalf("%s applies an op from %s: %v", d.name, s.byID[m.from].name, err)
	}
	if u.Waiting {
		s.stats.waited++
	}
	s.route(d, u.Send)
	return true
}

// maintain is the node's periodic work for one device: ask again for
// the parents of ops still waiting (Circle.Requests, with its backoff).
func (s *sim) maintain() {
	d := s.devs[s.pick(len(s.devs))]
	if d.c != nil {
		s.route(d, d.c.Requests())
	}
}

func (s *sim) partition() {
	s.stats.partitions++
	groups := 1 + s.pick(3)
	for _, d := range s.devs {
		d.group = s.pick(groups)
	}
}

func (s *sim) heal() {
	for _, d := range s.devs {
		d.group = 0
	}
}

func (s *sim) drain() {
	for s.deliver() {
	}
}

func (s *sim) run(steps int) {
	for range steps {
		switch k := s.pick(20); {
		case k < 8:
			s.act()
		case k < 18:
			s.deliver()
		case k < 19:
			s.maintain()
		case s.pick(2) == 0:
			s.partition()
		default:
			s.heal()
		}
	}
	// Heal, deliver everything, then let every device that counts itself
	// a member publish a prekey a few times: each such op carries its
	// author's heads, so every member learns every branch.
	s.heal()
	s.drain()
	for range 4 {
		s.clock.t = s.clock.t.Add(8 * 24 * time.Hour)
		for _, d := range s.devs {
			if d.c == nil || !d.c.Roster().IsMember(d.c.Self()) {
				continue
			}
			if _, err := d.keys.Rotate(); err != nil {
				s.t.Fatal(err)
			}
			u, err := d.c.PublishPrekey()
			if err != nil {
				s.t.Fatal(err)
			}
			if u != nil && u.Op != nil {
				for _, o := range s.others(d, d.c.Roster()) {
					o.inbox = append(o.inbox, simMsg{from: d.c.Self(), op: u.Op.Raw()})
				}
				s.route(d, u.Send)
			}
		}
		for _, d := range s.devs {
			if d.c != nil {
				s.route(d, d.c.Requests())
			}
		}
		s.drain()
	}
}

// TestRosterConverges is the property test of the merge rule: devices
// author random operations on their own views, ops are delivered in random
// order with duplicates and partitions, children often before parents. At
// the end every member holds the same log and computes the same roster,
// and the merge rule's promises hold on it. Seeds are a table; set
// REMORA_ROSTER_SEEDS=N to run seeds 1..N.
func TestRosterConverges(t *testing.T) {
	seeds := simSeeds()
	var total simStats
	var cuts, cycles int
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			cryptotest.SetGlobalRandom(t, seed) // same keys, hashes and canonical order every run
			s := newSim(t, seed, 7)
			s.run(160)
			c, y := s.check()
			cuts += c
			cycles += y
			total.ops += s.stats.ops
			total.waited += s.stats.waited
			total.duplicates += s.stats.duplicates
			total.partitions += s.stats.partitions
		})
	}
	t.Logf("%d seeds: %d ops, %d waited for parents, %d duplicates, %d partitions, %d ops voided by a concurrent revocation, %d revocations in cycles",
		len(seeds), total.ops, total.waited, total.duplicates, total.partitions, cuts, cycles)
	// The generator must reach the cases the rule is about.
	if len(seeds) >= 20 && (total.waited == 0 || cuts == 0 || cycles == 0) {
		t.Fatal("the simulation no longer exercises waiting ops, cut ops and revocation cycles")
	}
}

// TestKeysConverge runs the simulation of TestRosterConverges with key
// traffic too (sender keys broadcast after adds or sent directly,
// contributions, key requests): at the end every member holds every other
// member's chain of the current epoch, and nobody holds a chain of an
// epoch it was not a member of. REMORA_ROSTER_SEEDS=N runs seeds 1..N.
func TestKeysConverge(t *testing.T) {
	seeds := simSeeds()
	var total simStats
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			cryptotest.SetGlobalRandom(t, seed)
			s := newSim(t, seed, 7)
			s.keys = true
			s.run(160)
			s.check()
			total.ops += s.stats.ops
			total.handOuts += s.stats.handOuts
			total.handOutsClosed += s.stats.handOutsClosed
		})
	}
	t.Logf("%d seeds: %d ops, %d broadcast hand-outs opened, %d dropped after a removal closed their epoch",
		len(seeds), total.ops, total.handOuts, total.handOutsClosed)
	if len(seeds) >= 20 && (total.handOuts == 0 || total.handOutsClosed == 0) {
		t.Fatal("the simulation no longer exercises broadcast hand-outs, opened and closed")
	}
}

// check verifies convergence and the merge rule's promises, and returns how
// many ops were cut by a concurrent revocation and how many revocations sit
// in cycles.
func (s *sim) check() (cuts, cycles int) {
	t := s.t
	root := s.devs[0].c // the creator is never removed in this simulation
	l, r := root.log, root.Roster()
	// Convergence: every member holds the same log and roster.
	for _, m := range r.Members() {
		d := s.byID[m.Peer]
		dr := d.c.Roster()
		if !slices.Equal(dr.Heads, r.Heads) || dr.Epoch != r.Epoch || !slices.EqualFunc(d.c.Ops(), root.Ops(), bytes.Equal) {
			t.Fatalf("%s diverged: %d ops, members %v; d0: %d ops, members %v", d.name, len(d.c.Ops()), s.names(dr), len(root.Ops()), s.names(r))
		}
		for _, o := range r.Members() {
			a, _ := dr.Member(o.Peer)
			if a.Role != o.Role || !a.Prekey.Public.Equal(o.Prekey.Public) || a.Since != o.Since {
				t.Fatalf("%s sees %s differently", d.name, s.byID[o.Peer].name)
			}
		}
		if !slices.Equal(dr.Channels(), r.Channels()) {
			t.Fatalf("%s sees other channels", d.name)
		}
	}
	// Any order of the same ops verifies to the same roster.
	ops := root.Ops()
	s.rng.Shuffle(len(ops), func(i, j int) { ops[i], ops[j] = ops[j], ops[i] })
	v, err := VerifyLog(ops)
	if err != nil || v.Roster().Epoch != r.Epoch {
		t.Fatalf("a shuffled log verifies to another epoch: %v", err)
	}
	d := l.dag
	for i, o := range d.ops {
		if o.Kind != OpRemove {
			continue
		}
		counted := l.counted.has(i)
		// No removed device is readmitted (nobody here adds a device
		// twice): a counted removal keeps its target out.
		if counted && r.IsMember(o.Target) {
			t.Fatalf("%s is a member after its removal %s counted", s.byID[o.Target].name, o.hash)
		}
		// The creator is never removed or demoted: its removals count.
		if o.Author == root.Self() && !counted {
			t.Fatalf("a removal by the creator does not count")
		}
		// A device that left is out.
		if o.Author == o.Target && r.IsMember(o.Target) {
			t.Fatalf("%s left and is still a member", s.byID[o.Target].name)
		}
		// What an admin did before its removal, as the remover saw it,
		// stands: its adds counted in the remover's view still count.
		if !counted || o.Author == o.Target {
			continue
		}
		seen := d.evaluate(d.anc[i])
		d.anc[i].each(func(j int) bool {
			a := d.ops[j]
			if a.Author == o.Target && a.Kind == OpAdd && seen.has(j) && !l.counted.has(j) {
				t.Fatalf("%s's add of %s, counted when %s removed it, no longer counts", s.byID[a.Author].name,
					s.byID[a.Target].name, s.byID[o.Author].name)
			}
			return true
		})
	}
	// The log's own bookkeeping agrees with the roster: a member is the
	// creator or the target of a counted add not concurrent with a counted
	// removal of it.
	for _, m := range r.Members() {
		j := d.index[m.Since]
		if !l.counted.has(j) {
			t.Fatalf("%s is a member through an op that does not count", s.byID[m.Peer].name)
		}
	}
	for i, o := range d.ops {
		if d.cycle[i] >= 0 {
			cycles++
		}
		if !l.counted.has(i) && o.Kind != OpCreate {
			// voided by a concurrent revocation (rather than unauthorized)?
			past := d.fold(l.counted.and(d.anc[i]), i)
			m, ok := past.members[o.Author]
			if ok && (m.Role == RoleAdmin || !needsAdmin(o)) {
				cuts++
			}
		}
	}
	if l.dag.settled {
		t.Log("the merge rule settled an oscillation")
	}
	if s.keys {
		s.checkKeys()
	}
	return cuts, cycles
}

// checkKeys: every member holds every other member's chain of the current
// epoch (hand-outs, broadcast or direct, and requests for what they
// missed), and no device, member or not, holds a chain of an epoch it was
// not a member of (the circle keeps no history here).
func (s *sim) checkKeys() {
	t := s.t
	r := s.devs[0].c.Roster()
	for _, m := range r.Members() {
		d := s.byID[m.Peer]
		for _, o := range r.Members() {
			if _, ok := d.c.chains[chainID{r.Epoch, o.Peer}]; o.Peer != m.Peer && !ok {
				t.Fatalf("%s lacks %s's chain of the current epoch", d.name, s.byID[o.Peer].name)
			}
		}
	}
	for _, d := range s.devs {
		if d.c == nil {
			continue
		}
		for id := range d.c.chains {
			if id.Owner == d.c.Self() {
				continue
			}
			rec, ok := s.byID[id.Owner].c.epochRec(id.Epoch)
			if !ok || !slices.Contains(rec.Members, d.c.Self()) {
				t.Fatalf("%s holds %s's chain of an epoch it was not a member of", d.name, s.byID[id.Owner].name)
			}
		}
	}
}

func (s *sim) names(r *Roster) []string {
	var out []string
	for _, m := range r.Members() {
		out = append(out, s.byID[m.Peer].name)
	}
	return out
}

// simSeeds are the simulation's seeds: a fixed table, or 1..N with
// REMORA_ROSTER_SEEDS=N.
func simSeeds() []uint64 {
	seeds := []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24}
	if v, err := strconv.Atoi(os.Getenv("REMORA_ROSTER_SEEDS")); err == nil {
		seeds = seeds[:0]
		for i := 1; i <= v; i++ {
			seeds = append(seeds, uint64(i))
		}
	}
	return seeds
}
