package circle

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// group is a circle of n devices whose first two are admins, fully synced.
func group(t testing.TB, c *clock, n int) []*Circle {
	t.Helper()
	return groupWith(t, c, n, false)
}

// groupWith is group with the circle's history setting.
func groupWith(t testing.TB, c *clock, n int, history bool) []*Circle {
	t.Helper()
	a, _, err := Create(newKeyring(t, c), "friends", "m0", history, opts(c))
	if err != nil {
		t.Fatal(err)
	}
	members := map[string]*Circle{string(a.Self()): a}
	out := []*Circle{a}
	for i := 1; i < n; i++ {
		out = append(out, join(t, c, a, "m"+string(rune('0'+i)), members))
	}
	if n > 1 {
		u, err := a.SetRole(out[1].Self(), RoleAdmin)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range out[1:] {
			if _, err := m.ApplyOp(u.Op.Raw()); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

func peers(r *Roster) []peer.ID {
	var out []peer.ID
	for _, m := range r.Members() {
		out = append(out, m.Peer)
	}
	return out
}

// TestConcurrentRemovalsConverge: two admins remove different members at
// once, their ops travel on different channels and reach every member in
// either order; all converge on the same roster and epoch.
func TestConcurrentRemovalsConverge(t *testing.T) {
	c := &clock{time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	g := group(t, c, 5) // admins g[0], g[1]; members g[2], g[3], g[4]
	ua, err := g[0].RemoveMember(g[2].Self())
	if err != nil {
		t.Fatal(err)
	}
	ub, err := g[1].RemoveMember(g[3].Self())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ua.Op.Parents, ub.Op.Parents) {
		t.Fatal("the two removals are not concurrent")
	}
	orders := map[string][][]byte{
		"a then b": {ua.Op.Raw(), ub.Op.Raw()},
		"b then a": {ub.Op.Raw(), ua.Op.Raw()},
	}
	// g[0] and g[1] each saw their own op first; g[4] sees a-then-b, g[2]
	// and g[3] b-then-a.
	if _, err := g[0].ApplyOp(ub.Op.Raw()); err != nil {
		t.Fatal(err)
	}
	if _, err := g[1].ApplyOp(ua.Op.Raw()); err != nil {
		t.Fatal(err)
	}
	for i, name := range map[int]string{2: "b then a", 3: "b then a", 4: "a then b"} {
		for _, raw := range orders[name] {
			if _, err := g[i].ApplyOp(raw); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := g[0].Roster()
	if want.IsMember(g[2].Self()) || want.IsMember(g[3].Self()) || want.Len() != 3 {
		t.Fatalf("roster after both removals: %v", peers(want))
	}
	for i, m := range g {
		r := m.Roster()
		if r.Epoch != want.Epoch || !slices.Equal(peers(r), peers(want)) || !slices.Equal(r.Heads, want.Heads) {
			t.Fatalf("member %d diverged: %v epoch %s, want %v epoch %s", i, peers(r), r.Epoch, peers(want), want.Epoch)
		}
	}
	// A log rebuilt from the ops in any order verifies to the same roster.
	ops := g[4].Ops()
	for range 5 {
		rand.Shuffle(len(ops), func(i, j int) { ops[i], ops[j] = ops[j], ops[i] })
		l, err := VerifyLog(ops)
		if err != nil {
			t.Fatal(err)
		}
		if l.Roster().Epoch != want.Epoch {
			t.Fatal("VerifyLog of shuffled ops gives another epoch")
		}
	}
}

// TestRemoveWins covers the conflicts the merge rule decides.
func TestRemoveWins(t *testing.T) {
	tests := []struct {
		name string
		// run makes two concurrent ops from g and returns them.
		run   func(t *testing.T, g []*Circle, x *Circle) (a, b *Update)
		check func(t *testing.T, g []*Circle, x *Circle, r *Roster)
	}{
		{
			name: "role change concurrent with remove",
			run: func(t *testing.T, g []*Circle, x *Circle) (*Update, *Update) {
				a, err := g[0].RemoveMember(g[2].Self())
				if err != nil {
					t.Fatal(err)
				}
				b, err := g[1].SetRole(g[2].Self(), RoleAdmin)
				if err != nil {
					t.Fatal(err)
				}
				return a, b
			},
			check: func(t *testing.T, g []*Circle, x *Circle, r *Roster) {
				if r.IsMember(g[2].Self()) {
					t.Fatal("promoted member survived a concurrent removal")
				}
			},
		},
		{
			name: "admins remove each other",
			run: func(t *testing.T, g []*Circle, x *Circle) (*Update, *Update) {
				a, err := g[0].RemoveMember(g[1].Self())
				if err != nil {
					t.Fatal(err)
				}
				b, err := g[1].RemoveMember(g[0].Self())
				if err != nil {
					t.Fatal(err)
				}
				return a, b
			},
			check: func(t *testing.T, g []*Circle, x *Circle, r *Roster) {
				if r.IsMember(g[0].Self()) || r.IsMember(g[1].Self()) {
					t.Fatalf("mutual removal left %v", peers(r))
				}
			},
		},
		{
			name: "removed admin's concurrent add is void",
			run: func(t *testing.T, g []*Circle, x *Circle) (*Update, *Update) {
				a, err := g[0].RemoveMember(g[1].Self())
				if err != nil {
					t.Fatal(err)
				}
				b, err := g[1].AddMember(x.Self(), x.keys.Current(), "x", RoleMember)
				if err != nil {
					t.Fatal(err)
				}
				return a, b
			},
			check: func(t *testing.T, g []*Circle, x *Circle, r *Roster) {
				if r.IsMember(x.Self()) || r.IsMember(g[1].Self()) {
					t.Fatalf("roster %v", peers(r))
				}
			},
		},
		{
			name: "concurrent channel changes resolve the same everywhere",
			run: func(t *testing.T, g []*Circle, x *Circle) (*Update, *Update) {
				a, err := g[0].SetChannel(Channel{ID: "c1", Kind: "matrix", Address: "!a:example.org"})
				if err != nil {
					t.Fatal(err)
				}
				b, err := g[1].SetChannel(Channel{ID: "c1", Kind: "matrix", Address: "!b:example.org"})
				if err != nil {
					t.Fatal(err)
				}
				return a, b
			},
			check: func(t *testing.T, g []*Circle, x *Circle, r *Roster) {
				if len(r.Channels()) != 1 {
					t.Fatalf("channels %v", r.Channels())
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &clock{time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
			g := group(t, c, 4)
			x, _, err := Create(newKeyring(t, c), "other", "x", false, opts(c))
			if err != nil {
				t.Fatal(err)
			}
			ua, ub := tt.run(t, g, x)
			// g[0] holds a, g[1] holds b; g[3] gets b first, a verifier
			// gets a first.
			if _, err := g[0].ApplyOp(ub.Op.Raw()); err != nil {
				t.Fatal(err)
			}
			if _, err := g[1].ApplyOp(ua.Op.Raw()); err != nil {
				t.Fatal(err)
			}
			for _, raw := range [][]byte{ub.Op.Raw(), ua.Op.Raw()} {
				if _, err := g[3].ApplyOp(raw); err != nil {
					t.Fatal(err)
				}
			}
			r := g[0].Roster()
			for i, m := range []*Circle{g[1], g[3]} {
				if m.Roster().Epoch != r.Epoch || !slices.Equal(m.Roster().Channels(), r.Channels()) {
					t.Fatalf("replica %d diverged", i)
				}
			}
			tt.check(t, g, x, r)
		})
	}
}

func TestUnauthorizedOpsIgnored(t *testing.T) {
	c := &clock{time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	g := group(t, c, 3) // g[2] is a plain member
	if _, err := g[2].RemoveMember(g[0].Self()); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("member removing an admin: %v", err)
	}
	// Forge it anyway, bypassing the local check: it verifies as a
	// signature but has no effect on the roster.
	o := Op{Kind: OpRemove, Target: g[0].Self(), Circle: g[2].ID(), Parents: g[2].Roster().Heads, Time: c.t}
	if err := o.sign(g[2].keys.Identity()); err != nil {
		t.Fatal(err)
	}
	before := g[0].Roster().Epoch
	if _, err := g[0].ApplyOp(o.Raw()); err != nil {
		t.Fatal(err)
	}
	if g[0].Roster().Epoch != before || !g[0].Roster().IsMember(g[0].Self()) {
		t.Fatal("an unauthorized removal changed the roster")
	}
	// A member may leave by itself.
	u, err := g[2].RemoveMember(g[2].Self())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g[0].ApplyOp(u.Op.Raw()); err != nil {
		t.Fatal(err)
	}
	if g[0].Roster().IsMember(g[2].Self()) {
		t.Fatal("leaving member still in the roster")
	}
}

func TestLogErrors(t *testing.T) {
	c := &clock{time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	g := group(t, c, 2)
	other, _, _ := Create(newKeyring(t, c), "other", "x", false, opts(c))
	u, err := g[0].SetChannel(Channel{ID: "c", Kind: "dir", Address: "/tmp/x"})
	if err != nil {
		t.Fatal(err)
	}
	u2, err := g[0].SetChannel(Channel{ID: "d", Kind: "dir", Address: "/tmp/y"})
	if err != nil {
		t.Fatal(err)
	}
	tamper := bytes.Clone(u.Op.Raw())
	tamper[len(tamper)-70] ^= 1
	tests := []struct {
		name string
		raw  []byte
		want error
	}{
		{"other circle", other.Ops()[0], ErrWrongCircle},
		{"tampered", tamper, ErrMalformedOp},
		{"garbage", []byte("hello"), ErrMalformedOp},
		{"empty", nil, ErrMalformedOp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := g[1].ApplyOp(tt.raw)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	for _, raw := range [][]byte{u.Op.Raw(), u2.Op.Raw()} {
		if _, err := g[1].ApplyOp(raw); err != nil {
			t.Fatal(err)
		}
	}
	if len(g[1].Roster().Channels()) != 2 {
		t.Fatal("channels not applied")
	}
	if _, err := VerifyLog(g[1].Ops()[1:]); !errors.Is(err, ErrNotGenesis) {
		t.Fatalf("log without genesis: %v", err)
	}
}
