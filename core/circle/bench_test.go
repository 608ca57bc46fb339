package circle

import (
	"fmt"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/identity"
)

// benchCircle creates a circle and adds n members, signed by the creator.
func benchCircle(b *testing.B, n int) (*clock, *Circle, []*identity.Identity) {
	c := &clock{time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	k, err := identity.Create(b.TempDir(), identity.Options{Now: c.Now, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	a, _, err := Create(k, "bench", "admin", false, opts(c))
	if err != nil {
		b.Fatal(err)
	}
	var ids []*identity.Identity
	for range n {
		id, _ := identity.Generate(nil)
		if _, err := a.AddMember(id.PeerID(), id.SignPrekey(k.Current().Public, c.t, c.t.Add(time.Hour)), "m", RoleMember); err != nil {
			b.Fatal(err)
		}
		ids = append(ids, id)
	}
	return c, a, ids
}

// benchLog builds a log of 200 ops leaving 50 members: 60 adds, 10
// removals, 130 role/channel/settings changes, signed by the creator.
func benchLog(b *testing.B) [][]byte {
	_, a, ids := benchCircle(b, 60)
	for i := 0; i < 11; i++ {
		if _, err := a.RemoveMember(ids[i].PeerID()); err != nil {
			b.Fatal(err)
		}
	}
	for a.log.Len() < 200 {
		if _, err := a.SetRole(ids[20+a.log.Len()%30].PeerID(), Role(1+a.log.Len()%2)); err != nil {
			b.Fatal(err)
		}
	}
	if n := a.Roster().Len(); n != 50 {
		b.Fatalf("%d members, want 50", n)
	}
	return a.Ops()
}

// BenchmarkVerifyRoster verifies a 200-op log with 50 members from scratch:
// every signature, parent link and authorization.
func BenchmarkVerifyRoster(b *testing.B) {
	ops := benchLog(b)
	b.ResetTimer()
	for b.Loop() {
		l, err := VerifyLog(ops)
		if err != nil || l.Roster().Len() != 50 {
			b.Fatal(err)
		}
	}
}

// BenchmarkRosterYear measures what a year of weekly prekey operations
// costs: a log of 10 members who each published 52 prekeys (530 ops).
// "verify" rebuilds it from scratch (Load, a welcome); "apply" is the merge
// recomputed when one more operation arrives.
func BenchmarkRosterYear(b *testing.B) {
	c, a, ids := benchCircle(b, 9)
	k := a.keys
	for w := range 52 {
		c.t = c.t.Add(7 * 24 * time.Hour)
		for _, id := range ids {
			o := Op{Circle: a.ID(), Parents: a.Roster().Heads, Kind: OpPrekey, Time: c.t, Target: id.PeerID(),
				Prekey: id.SignPrekey(k.Current().Public, c.t, c.t.Add(7*24*time.Hour))}
			if err := o.sign(id); err != nil {
				b.Fatal(err)
			}
			if _, err := a.ApplyOp(o.Raw()); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := a.SetChannel(Channel{ID: "c", Kind: "dir", Address: fmt.Sprint("/w", w)}); err != nil {
			b.Fatal(err)
		}
	}
	ops := a.Ops()
	b.Logf("%d ops, %d bytes", len(ops), func() (n int) {
		for _, o := range ops {
			n += len(o)
		}
		return n
	}())
	b.Run("verify", func(b *testing.B) {
		for b.Loop() {
			if _, err := VerifyLog(ops); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("apply", func(b *testing.B) {
		l, err := VerifyLog(ops)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			l.recompute()
		}
	})
}

// BenchmarkState: what a node pays to persist a circle after each key
// message, for a circle formed by 40 joins (every epoch of the formation
// still in its grace window, each member's chain of each epoch held).
func BenchmarkState(b *testing.B) {
	a := group(b, &clock{time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}, 40)[0]
	b.ReportAllocs()
	for b.Loop() {
		st, err := a.State()
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(st)))
	}
}
