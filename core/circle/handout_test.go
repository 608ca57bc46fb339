package circle

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/remora-p2p/remora/core/envelope"
)

// senderKeys splits the sender-key hand-outs of its new epoch in out:
// broadcasts and direct ones (the history hand-out of an older chain is
// neither).
func senderKeys(out []Outgoing, e Epoch) (bcast, direct []Outgoing) {
	for _, o := range out {
		if o.Roster != nil || o.Msg.Kind != MsgSenderKey || o.Msg.Epoch != e {
			continue
		}
		if len(o.Broadcast) > 0 {
			bcast = append(bcast, o)
		} else {
			direct = append(direct, o)
		}
	}
	return bcast, direct
}

// sealHandOut seals a hand-out the way the node does (one broadcast
// envelope under the older epoch, with HandOutKey) and returns it.
func sealHandOut(t *testing.T, c *clock, from *Circle, o Outgoing) []byte {
	t.Helper()
	sk, err := from.HandOutKey(o.Epoch)
	if err != nil {
		t.Fatal(err)
	}
	var ek *envelope.EpochKeys
	for _, k := range from.Epochs() {
		if k.Epoch == envelope.Epoch(o.Epoch) {
			ek = k
		}
	}
	if ek == nil {
		t.Fatalf("no keys of epoch %s", o.Epoch)
	}
	d := envelope.Draft{Kind: envelope.KindSenderKey, Expiry: c.t.Add(time.Hour), Body: o.Msg.Marshal()}
	s, err := (&envelope.Sealer{Now: c.Now}).Broadcast(ek, Signer(from.keys.Identity()), sk.Key[:], d, envelope.Route{Channel: "dir:test", MaxSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	return s.Envelopes[0]
}

// openAs opens raw with c's keys, as c's node would.
func openAs(c *clock, by *Circle, raw []byte) (*envelope.Message, error) {
	set := NewSet(by.keys)
	set.Put(by)
	return envelope.NewOpener(set, by.Self(), envelope.OpenOptions{Now: c.Now}).Open("dir:test", raw)
}

// TestAddHandsOutOnce: at an add, each member of the epoch before hands its
// new chain to the others of that epoch in one broadcast under it and to
// the newcomer in a direct envelope; the newcomer cannot open the
// broadcast, nor get the older chain by asking; afterwards everyone opens
// everyone's new-epoch messages. The join of the 4th member takes 3(N−1)
// hand-outs instead of N(N−1).
func TestAddHandsOutOnce(t *testing.T) {
	tests := []struct {
		name    string
		history bool
		perOld  int // sender-key messages each old member sends
	}{
		{"no history", false, 2},
		{"history", true, 3}, // and its chain of the epoch before, direct to the newcomer
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &clock{time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
			g := groupWith(t, c, 3, tt.history)
			members := byPeer(g)
			old := g[0].Epoch()
			nc, sends := admit(t, c, g[0], "m3", members)
			n := len(members)
			if n != 4 || nc.Epoch() == old {
				t.Fatalf("%d members, epoch changed %v", n, nc.Epoch() != old)
			}
			total := 0
			for _, m := range g {
				bcast, direct := senderKeys(sends[m], nc.Epoch())
				if len(bcast) != 1 || len(direct) != 1 || direct[0].To != nc.Self() {
					t.Fatalf("%s hands out %d broadcasts and %d direct (to newcomer: %v), want 1 and 1", m.Self(), len(bcast), len(direct),
						len(direct) == 1 && direct[0].To == nc.Self())
				}
				b := bcast[0]
				want := slices.DeleteFunc(peers(g[0].Roster()), func(p peer.ID) bool { return p == m.Self() || p == nc.Self() })
				got := slices.Clone(b.Broadcast)
				slices.Sort(got)
				slices.Sort(want)
				if b.Epoch != old || b.To != "" || !slices.Equal(got, want) {
					t.Fatalf("%s broadcasts under %s to %v, want under %s to %v", m.Self(), b.Epoch, got, old, want)
				}
				count := 0
				for _, o := range sends[m] {
					if o.Roster == nil && o.Msg.Kind == MsgSenderKey {
						count++
					}
				}
				if count != tt.perOld {
					t.Fatalf("%s sends %d sender keys, want %d", m.Self(), count, tt.perOld)
				}
				total += 2

				// The newcomer cannot open it: it knows no epoch before
				// its own, and asking for the chain it is sealed with is
				// refused.
				raw := sealHandOut(t, c, m, b)
				for _, r := range g {
					if r == m {
						continue
					}
					msg, err := openAs(c, r, raw)
					if err != nil {
						t.Fatalf("%s cannot open %s's hand-out: %v", r.Self(), m.Self(), err)
					}
					if km, err := ParseKeyMsg(msg.Body); err != nil || km.Epoch != nc.Epoch() {
						t.Fatalf("%s opened %+v, %v", r.Self(), km, err)
					}
				}
				// With history the newcomer is given the chains of the
				// epoch before (by design), and so may read this too:
				// its own epoch's key.
				if _, err := openAs(c, nc, raw); err == nil {
					t.Fatalf("the newcomer opens %s's hand-out", m.Self())
				}
				if !tt.history {
					if _, err := openAs(c, nc, raw); !errors.Is(err, envelope.ErrNotForUs) {
						t.Fatalf("the newcomer opens %s's hand-out: %v", m.Self(), err)
					}
					out, err := m.HandleKeyMsg(nc.Self(), KeyMsg{Kind: MsgKeyRequest, Circle: m.ID(), Epoch: old})
					if !errors.Is(err, ErrNotMember) || len(out) != 0 {
						t.Fatalf("the newcomer asks %s for its chain of the epoch before: %d answers, %v", m.Self(), len(out), err)
					}
					if _, ok := nc.MessageKeys(nc.ID().EnvelopeID(), envelope.Epoch(old), m.Self()); ok {
						t.Fatalf("the newcomer holds %s's chain of the epoch before", m.Self())
					}
				}
			}
			bcast, direct := senderKeys(sends[nc], nc.Epoch())
			if len(bcast) != 0 || len(direct) != n-1 {
				t.Fatalf("the newcomer hands out %d broadcasts and %d direct, want 0 and %d", len(bcast), len(direct), n-1)
			}
			total += len(direct)
			if total != 3*(n-1) {
				t.Fatalf("%d hand-out envelopes for the join, want 3(N−1) = %d (N(N−1) = %d before)", total, 3*(n-1), n*(n-1))
			}

			for m, out := range sends {
				deliver(t, m, out, members)
			}
			for _, m := range members {
				if r := m.Requests(); len(r) != 0 {
					t.Fatalf("%s still misses keys: %+v", m.Self(), r)
				}
				sk, err := m.SendKey()
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range members {
					if r != m && !opens(r, m.Self(), sk) {
						t.Fatalf("%s cannot open %s's new-epoch messages", r.Self(), m.Self())
					}
				}
			}
		})
	}
}

// TestRemovalHandsOutDirect: a removal produces no broadcast hand-out, and
// one made for an add closes when a removal follows before it is sealed:
// the removed member holds the chains of the epochs it was in. An add
// after the removal broadcasts again, under the epoch without it, which
// it cannot open.
func TestRemovalHandsOutDirect(t *testing.T) {
	c := &clock{time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	g := group(t, c, 4)
	a, b, x := g[0], g[1], g[2]
	members := byPeer(g)
	e0 := a.Epoch()
	// An add whose hand-outs are not sent yet.
	nc, sends := admit(t, c, a, "m4", members)
	e1 := nc.Epoch()
	if bc, _ := senderKeys(sends[b], e1); len(bc) != 1 {
		t.Fatalf("b hands out %d broadcasts after the add", len(bc))
	}
	if _, err := b.HandOutKey(e0); err != nil {
		t.Fatalf("hand-out key before the removal: %v", err)
	}

	u, err := a.RemoveMember(x.Self())
	if err != nil {
		t.Fatal(err)
	}
	delete(members, string(x.Self()))
	removal := map[*Circle][]Outgoing{a: u.Send}
	for _, m := range members {
		if m == a {
			continue
		}
		mu, err := m.ApplyOp(u.Op.Raw())
		if err != nil {
			t.Fatal(err)
		}
		removal[m] = mu.Send
	}
	e2 := a.Epoch()
	for m, out := range removal {
		for _, o := range out {
			if len(o.Broadcast) > 0 {
				t.Fatalf("%s broadcasts a hand-out after a removal", m.Self())
			}
			if o.To == x.Self() {
				t.Fatalf("%s sends the removed member %v", m.Self(), o.Msg.Kind)
			}
		}
		for _, e := range []Epoch{e0, e1} {
			if _, err := m.HandOutKey(e); !errors.Is(err, ErrHandOutClosed) && !errors.Is(err, ErrUnknownEpoch) {
				t.Fatalf("%s may still broadcast under an epoch the removed member was in: %v", m.Self(), err)
			}
		}
	}
	// The add's hand-outs that wait are dropped by the node (it seals
	// with HandOutKey); what was sent directly still arrives.
	for m, out := range sends {
		if m == x {
			continue
		}
		var direct []Outgoing
		for _, o := range out {
			if len(o.Broadcast) == 0 && o.To != x.Self() {
				direct = append(direct, o)
			}
		}
		deliver(t, m, direct, members)
	}
	for m, out := range removal {
		deliver(t, m, out, members)
	}
	for _, m := range members {
		if r := m.Requests(); len(r) != 0 {
			t.Fatalf("%s still misses keys after the removal: %+v", m.Self(), r)
		}
	}

	// An add after the removal: a broadcast under e2, which x never held.
	_, sends = admit(t, c, a, "m5", members)
	bc, _ := senderKeys(sends[b], a.Epoch())
	if len(bc) != 1 || bc[0].Epoch != e2 || slices.Contains(bc[0].Broadcast, x.Self()) {
		t.Fatalf("b's hand-out after the next add: %+v", bc)
	}
	sk, err := b.HandOutKey(e2)
	if err != nil {
		t.Fatal(err)
	}
	if opens(x, b.Self(), sk) {
		t.Fatal("the removed member opens a hand-out under the epoch after its removal")
	}
	if _, err := openAs(c, x, sealHandOut(t, c, b, bc[0])); err == nil {
		t.Fatal("the removed member opens a hand-out under the epoch after its removal")
	}
	if out, err := b.HandleKeyMsg(x.Self(), KeyMsg{Kind: MsgKeyRequest, Circle: b.ID(), Epoch: e2}); err == nil || len(out) != 0 {
		t.Fatalf("the removed member asks for b's chain of e2: %d answers, %v", len(out), err)
	}
}

// TestHandOutKeyRefuses: a hand-out goes under an older epoch only while
// nobody outside the roster holds the chain it is sealed with.
func TestHandOutKeyRefuses(t *testing.T) {
	tests := []struct {
		name    string
		history bool
		// after runs on the group (a is an admin) once the epoch before
		// an add, e, is known; it returns the device asked.
		after func(t *testing.T, c *clock, g []*Circle, members map[string]*Circle) *Circle
		want  error
	}{
		{"add only", false, func(t *testing.T, c *clock, g []*Circle, m map[string]*Circle) *Circle { return g[1] }, nil},
		{"past the grace window", false, func(t *testing.T, c *clock, g []*Circle, m map[string]*Circle) *Circle {
			c.t = c.t.Add(DefaultEpochGrace + time.Minute)
			return g[1]
		}, ErrHandOutClosed},
		{"a member of it removed", false, func(t *testing.T, c *clock, g []*Circle, m map[string]*Circle) *Circle {
			if _, err := g[0].RemoveMember(g[2].Self()); err != nil {
				t.Fatal(err)
			}
			return g[0]
		}, ErrHandOutClosed},
		{"a later newcomer removed, history on", true, func(t *testing.T, c *clock, g []*Circle, m map[string]*Circle) *Circle {
			// It was given the chains of e (history) and keeps them.
			var nc *Circle
			for _, x := range m {
				if !slices.Contains(g, x) {
					nc = x
				}
			}
			if _, err := g[0].RemoveMember(nc.Self()); err != nil {
				t.Fatal(err)
			}
			return g[0]
		}, ErrHandOutClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &clock{time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
			g := groupWith(t, c, 3, tt.history)
			members := byPeer(g)
			e := g[0].Epoch()
			join(t, c, g[0], "m3", members)
			if _, err := g[0].HandOutKey(g[0].Epoch()); !errors.Is(err, ErrHandOutClosed) {
				t.Fatalf("hand-out under the current epoch: %v", err)
			}
			by := tt.after(t, c, g, members)
			_, err := by.HandOutKey(e)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}
