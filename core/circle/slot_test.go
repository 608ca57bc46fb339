package circle

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestPresenceBoardKeyUnlinkable: a member's presence board key is not
// the same for the whole epoch. In every window the members hold distinct
// slots (no one overwrites another's record), the epoch uses exactly one
// key per member, and a member's slot changes from window to window; a
// non-member gets no slot, and another epoch's keys are all different.
func TestPresenceBoardKeyUnlinkable(t *testing.T) {
	for _, n := range []int{2, 3, 8} {
		t.Run(fmt.Sprintf("%d members", n), func(t *testing.T) {
			s := deriveEpochSecret(ID{1}, Epoch{2}, [32]byte{3}, nil)
			// An epoch after a removal: its contribution changes the names.
			other := deriveEpochSecret(ID{1}, Epoch{9}, [32]byte{3}, [][32]byte{{4}})
			var members []peer.ID
			for i := range n {
				members = append(members, peer.ID(fmt.Sprintf("member-%d", i)))
			}
			start := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
			const windows = 48
			used := map[string]bool{}
			perMember := map[peer.ID]map[string]bool{}
			changes := map[peer.ID]int{}
			last := map[peer.ID]string{}
			for w := range windows {
				at := start.Add(time.Duration(w) * PresenceSlotWindow)
				inWindow := map[string]peer.ID{}
				for _, m := range members {
					key, ok := s.PresenceBoardKey(members, m, at)
					if !ok {
						t.Fatalf("member %s has no slot", m)
					}
					if prev, taken := inWindow[key]; taken {
						t.Fatalf("window %d: %s and %s share slot %s", w, prev, m, key)
					}
					inWindow[key] = m
					used[key] = true
					if perMember[m] == nil {
						perMember[m] = map[string]bool{}
					}
					perMember[m][key] = true
					if last[m] != "" && last[m] != key {
						changes[m]++
					}
					last[m] = key
					// Within its window the key stays; the clock inside it
					// does not matter.
					if again, _ := s.PresenceBoardKey(members, m, at.Add(PresenceSlotWindow-time.Second)); again != key {
						t.Fatalf("window %d: %s's key moved inside the window", w, m)
					}
					if k2, _ := other.PresenceBoardKey(members, m, at); k2 == key {
						t.Fatalf("an epoch after a removal shares the key %s", key)
					}
				}
			}
			if len(used) != n {
				t.Errorf("the epoch used %d keys for %d members, want one per member", len(used), n)
			}
			for _, m := range members {
				// The slot is drawn afresh each window: with n slots a
				// member keeps its slot about 1/n of the time.
				if len(perMember[m]) < 2 || changes[m] < windows/(2*n) {
					t.Errorf("%s used %d keys, changed %d times in %d windows: linkable across publications", m, len(perMember[m]), changes[m], windows)
				}
			}
			if _, ok := s.PresenceBoardKey(members, "stranger", start); ok {
				t.Error("a non-member got a slot")
			}
		})
	}
}

// TestBoardNamesKeptByAddsChangedByRemoval: an add keeps the board's key
// names (a circle formed by n joins writes n presence slots, not n²/2),
// while the routing secret still changes; a removal changes both, so the
// removed member cannot name the new slots. PresenceBoardKeys lists each
// key once although the epochs of the grace window share them.
func TestBoardNamesKeptByAddsChangedByRemoval(t *testing.T) {
	c := &clock{time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	g := group(t, c, 2)
	a := g[0]
	secret := func() EpochSecret {
		t.Helper()
		s, err := a.EpochSecrets()
		if err != nil || len(s) == 0 {
			t.Fatalf("epoch secrets: %v", err)
		}
		return s[0]
	}
	before := secret()
	members := map[string]*Circle{string(a.Self()): a, string(g[1].Self()): g[1]}
	x := join(t, c, a, "x", members)
	added := secret()
	if added.Epoch == before.Epoch || string(added.Bytes()) == string(before.Bytes()) {
		t.Fatal("the add kept the epoch or its routing secret")
	}
	if got, want := added.PresenceSlotKeys(2), before.PresenceSlotKeys(2); !slices.Equal(got, want) {
		t.Errorf("the add renamed the slots: %v, were %v", got, want)
	}
	keys := a.PresenceBoardKeys()
	if len(keys) != 3+presenceSlotSlack {
		t.Errorf("%d keys to read after the add, want %d (3 members, the previous epoch's slack, each once)", len(keys), 3+presenceSlotSlack)
	}
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[k] {
			t.Fatalf("key %s listed twice", k)
		}
		seen[k] = true
	}

	u, err := a.RemoveMember(x.Self())
	if err != nil {
		t.Fatal(err)
	}
	if !u.EpochChanged {
		t.Fatal("the removal kept the epoch")
	}
	removed := secret()
	for i, k := range removed.PresenceSlotKeys(3 + presenceSlotSlack) {
		if slices.Contains(added.PresenceSlotKeys(3+presenceSlotSlack), k) {
			t.Fatalf("slot %d keeps its key %s after the removal: the removed member can name it", i, k)
		}
	}
}
