package circle

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/remora-p2p/remora/core/identity"
)

// scene builds roster logs op by op with explicit parents, the way a
// misbehaving or partitioned device would: each op is signed by the named
// device on top of the named ops, whatever that device "knows".
type scene struct {
	t      *testing.T
	now    time.Time
	circle ID
	devs   map[string]*identity.Identity
	pre    map[string]identity.Prekey
	ops    map[string]*Op
}

func newScene(t *testing.T, names ...string) *scene {
	t.Helper()
	s := &scene{t: t, now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC), devs: map[string]*identity.Identity{},
		pre: map[string]identity.Prekey{}, ops: map[string]*Op{}}
	k := newKeyring(t, &clock{s.now})
	for _, n := range names {
		id, err := identity.Generate(nil)
		if err != nil {
			t.Fatal(err)
		}
		s.devs[n] = id
		s.pre[n] = id.SignPrekey(k.Current().Public, s.now, s.now.Add(7*24*time.Hour))
	}
	s.circle[0] = 7
	// names[0] creates the circle: op "create".
	s.sign("create", names[0], nil, Op{Kind: OpCreate, Target: s.devs[names[0]].PeerID(),
		Prekey: s.pre[names[0]], Name: names[0], CircleName: "scene"})
	return s
}

func (s *scene) id(name string) peer.ID { return s.devs[name].PeerID() }

// sign makes op name, authored by dev on top of parents.
func (s *scene) sign(name, dev string, parents []string, o Op) {
	s.t.Helper()
	for _, p := range parents {
		o.Parents = append(o.Parents, s.ops[p].Hash())
	}
	slices.SortFunc(o.Parents, func(a, b Hash) int { return bytes.Compare(a[:], b[:]) })
	o.Circle = s.circle
	s.now = s.now.Add(time.Minute)
	o.Time = s.now
	if err := o.sign(s.devs[dev]); err != nil {
		s.t.Fatalf("sign %s: %v", name, err)
	}
	s.ops[name] = &o
}

func (s *scene) add(name, by string, parents []string, who string, role Role) {
	s.sign(name, by, parents, Op{Kind: OpAdd, Target: s.id(who), Prekey: s.pre[who], Name: who, Role: role})
}

func (s *scene) remove(name, by string, parents []string, who string) {
	s.sign(name, by, parents, Op{Kind: OpRemove, Target: s.id(who)})
}

// log verifies the named ops (all of them when none are named) in several
// orders, checks that every order gives the same roster and returns it.
func (s *scene) log(names ...string) *Log {
	s.t.Helper()
	if len(names) == 0 {
		for n := range s.ops {
			names = append(names, n)
		}
		slices.Sort(names)
	}
	var raws [][]byte
	for _, n := range names {
		raws = append(raws, s.ops[n].Raw())
	}
	var first *Log
	rng := rand.New(rand.NewPCG(1, 2))
	for range 4 {
		rng.Shuffle(len(raws), func(i, j int) { raws[i], raws[j] = raws[j], raws[i] })
		l, err := VerifyLog(raws)
		if err != nil {
			s.t.Fatal(err)
		}
		if first == nil {
			first = l
			continue
		}
		if l.Roster().Epoch != first.Roster().Epoch || !slices.Equal(peers(l.Roster()), peers(first.Roster())) {
			s.t.Fatal("the same ops in another order give another roster")
		}
	}
	return first
}

// members names the members of a roster, sorted.
func (s *scene) members(r *Roster) []string {
	var out []string
	for n, id := range s.devs {
		if m, ok := r.Member(id.PeerID()); ok {
			if m.Role == RoleAdmin {
				n += "*"
			}
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// TestMergeRule covers the decisions of the merge rule (doc.go, "Merge")
// that concern removed and demoted admins. Each case is a small log built
// with explicit parents; admins are marked with a star.
func TestMergeRule(t *testing.T) {
	tests := []struct {
		name  string
		build func(s *scene)
		want  []string
	}{
		{
			// The finding of issue 13: B, removed, signs a removal of C on
			// top of the ops before its own removal. It is concurrent with
			// the removal, so it is void.
			name: "removed admin's back-dated removal is void",
			build: func(s *scene) {
				s.add("b", "A", []string{"create"}, "B", RoleAdmin)
				s.add("c", "A", []string{"b"}, "C", RoleMember)
				s.remove("rmB", "A", []string{"c"}, "B")
				s.remove("late", "B", []string{"c"}, "C")
			},
			want: []string{"A*", "C"},
		},
		{
			name: "removed admin's back-dated add is void",
			build: func(s *scene) {
				s.add("b", "A", []string{"create"}, "B", RoleAdmin)
				s.remove("rmB", "A", []string{"b"}, "B")
				s.add("late", "B", []string{"b"}, "X", RoleMember)
			},
			want: []string{"A*"},
		},
		{
			name: "demoted admin's back-dated removal is void",
			build: func(s *scene) {
				s.add("b", "A", []string{"create"}, "B", RoleAdmin)
				s.add("c", "A", []string{"b"}, "C", RoleMember)
				s.sign("demote", "A", []string{"c"}, Op{Kind: OpRole, Target: s.id("B"), Role: RoleMember})
				s.remove("late", "B", []string{"c"}, "C")
			},
			want: []string{"A*", "B", "C"},
		},
		{
			// Authority granted by a void op is void too: B, removed,
			// back-dates making X an admin, and X removes C.
			name: "accomplice made admin by a removed admin has no authority",
			build: func(s *scene) {
				s.add("b", "A", []string{"create"}, "B", RoleAdmin)
				s.add("c", "A", []string{"b"}, "C", RoleMember)
				s.remove("rmB", "A", []string{"c"}, "B")
				s.add("x", "B", []string{"c"}, "X", RoleAdmin)
				s.remove("rmC", "X", []string{"x"}, "C")
			},
			want: []string{"A*", "C"},
		},
		{
			// The other finding: B adds X; A saw that add and removes B; E,
			// on a stale branch, removes B too. X stays: A's removal saw
			// the add, so it was part of the circle before B's removal.
			name: "deep fork keeps the adds a remover saw",
			build: func(s *scene) {
				s.add("b", "A", []string{"create"}, "B", RoleAdmin)
				s.add("e", "A", []string{"b"}, "E", RoleAdmin)
				s.add("x", "B", []string{"e"}, "X", RoleMember)
				s.remove("rmA", "A", []string{"x"}, "B")
				s.remove("rmE", "E", []string{"e"}, "B")
			},
			want: []string{"A*", "E*", "X"},
		},
		{
			name: "deep fork keeps the adds another admin built on",
			build: func(s *scene) {
				s.add("b", "A", []string{"create"}, "B", RoleAdmin)
				s.add("e", "A", []string{"b"}, "E", RoleAdmin)
				s.add("x", "B", []string{"e"}, "X", RoleMember)
				s.sign("chan", "A", []string{"x"}, Op{Kind: OpChannelSet, Channel: Channel{ID: "c", Kind: "dir"}})
				s.remove("rmE", "E", []string{"e"}, "B")
			},
			want: []string{"A*", "E*", "X"},
		},
		{
			// A promotes E while B adds X; E saw the add and removes B;
			// A, not having seen the add, demotes B. The add stands: E was
			// an admin before A's demotion, whatever B did.
			name: "an add seen by a concurrently promoted admin stands",
			build: func(s *scene) {
				s.add("b", "A", []string{"create"}, "B", RoleAdmin)
				s.add("e", "A", []string{"b"}, "E", RoleMember)
				s.sign("promote", "A", []string{"e"}, Op{Kind: OpRole, Target: s.id("E"), Role: RoleAdmin})
				s.add("x", "B", []string{"e"}, "X", RoleMember)
				s.remove("rmB", "E", []string{"promote", "x"}, "B")
				s.sign("demote", "A", []string{"promote"}, Op{Kind: OpRole, Target: s.id("B"), Role: RoleMember})
			},
			want: []string{"A*", "E*", "X"},
		},
		{
			// B, removed, back-dates two promotions, and each promoted
			// accomplice builds on the other's: void authority cannot
			// vouch for void authority.
			name: "accomplices cannot endorse each other",
			build: func(s *scene) {
				s.add("b", "A", []string{"create"}, "B", RoleAdmin)
				s.add("c", "A", []string{"b"}, "C", RoleMember)
				s.add("x", "A", []string{"c"}, "X", RoleMember)
				s.remove("rmB", "A", []string{"x"}, "B")
				s.sign("px", "B", []string{"x"}, Op{Kind: OpRole, Target: s.id("X"), Role: RoleAdmin})
				s.sign("pc", "B", []string{"x"}, Op{Kind: OpRole, Target: s.id("C"), Role: RoleAdmin})
				s.sign("qx", "X", []string{"px", "pc"}, Op{Kind: OpChannelSet, Channel: Channel{ID: "x", Kind: "dir"}})
				s.sign("qc", "C", []string{"px", "pc"}, Op{Kind: OpChannelSet, Channel: Channel{ID: "c", Kind: "dir"}})
			},
			want: []string{"A*", "C", "X"},
		},
		{
			// What nobody but B saw when E removed B is indistinguishable
			// from an op B back-dated after its removal: void.
			name: "stale removal voids what only the removed admin saw",
			build: func(s *scene) {
				s.add("b", "A", []string{"create"}, "B", RoleAdmin)
				s.add("e", "A", []string{"b"}, "E", RoleAdmin)
				s.add("x", "B", []string{"e"}, "X", RoleMember)
				s.remove("rmE", "E", []string{"e"}, "B")
			},
			want: []string{"A*", "E*"},
		},
		{
			// An add causally before the admin's removal stands.
			name: "removing an admin keeps the members it added",
			build: func(s *scene) {
				s.add("b", "A", []string{"create"}, "B", RoleAdmin)
				s.add("x", "B", []string{"b"}, "X", RoleMember)
				s.remove("rmB", "A", []string{"x"}, "B")
			},
			want: []string{"A*", "X"},
		},
		{
			name: "admins removing each other are both removed",
			build: func(s *scene) {
				s.add("b", "A", []string{"create"}, "B", RoleAdmin)
				s.add("e", "A", []string{"b"}, "E", RoleAdmin)
				s.remove("rmB", "A", []string{"e"}, "B")
				s.remove("rmA", "B", []string{"e"}, "A")
			},
			want: []string{"E*"},
		},
		{
			name: "a three-way removal cycle removes all three",
			build: func(s *scene) {
				s.add("b", "A", []string{"create"}, "B", RoleAdmin)
				s.add("c", "A", []string{"b"}, "C", RoleAdmin)
				s.add("e", "A", []string{"c"}, "E", RoleAdmin)
				s.remove("AB", "A", []string{"e"}, "B")
				s.remove("BC", "B", []string{"e"}, "C")
				s.remove("CA", "C", []string{"e"}, "A")
			},
			want: []string{"E*"},
		},
		{
			// B, removed, races its removal with a removal of the admin
			// that removed it: both go (remove-wins), nobody else does.
			name: "a removed admin's counter-removal takes its remover and what only the remover saw",
			build: func(s *scene) {
				s.add("b", "A", []string{"create"}, "B", RoleAdmin)
				s.add("e", "A", []string{"b"}, "E", RoleAdmin)
				s.add("c", "E", []string{"e"}, "C", RoleMember)
				s.remove("rmB", "E", []string{"c"}, "B")
				s.remove("rmE", "B", []string{"e"}, "E")
				s.remove("rmA", "B", []string{"e"}, "A")
			},
			want: []string{"A*"},
		},
		{
			name: "a removed member cannot publish a prekey",
			build: func(s *scene) {
				s.add("b", "A", []string{"create"}, "B", RoleMember)
				s.remove("rmB", "A", []string{"b"}, "B")
				s.sign("pre", "B", []string{"b"}, Op{Kind: OpPrekey, Target: s.id("B"), Prekey: s.pre["B"]})
			},
			want: []string{"A*"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newScene(t, "A", "B", "C", "E", "X")
			tt.build(s)
			got := s.members(s.log().Roster())
			if !slices.Equal(got, tt.want) {
				t.Fatalf("members %v, want %v", got, tt.want)
			}
		})
	}
}
