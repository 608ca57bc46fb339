package node

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestCoalesce(t *testing.T) {
	for _, d := range []time.Duration{0, time.Millisecond, 300 * time.Millisecond, coalesceMin - 1} {
		if got := coalesce(d); got != d {
			t.Errorf("coalesce(%v) = %v: a short wait must stay as it is", d, got)
		}
	}
	for _, d := range []time.Duration{coalesceMin, 10 * time.Second, time.Minute + 123*time.Millisecond, 5 * time.Minute} {
		got := coalesce(d)
		end := time.Now().Add(got)
		if got < d || got >= d+coalesceGrid {
			t.Errorf("coalesce(%v) = %v: want in [d, d+%v)", d, got, coalesceGrid)
		}
		// It ends on the grid, within the few microseconds since the call.
		if off := end.Sub(end.Truncate(coalesceGrid)); off > 50*time.Millisecond && off < coalesceGrid-50*time.Millisecond {
			t.Errorf("coalesce(%v) ends %v past a whole second", d, off)
		}
	}
}

// TestIdleCircleNotRewritten: the maintenance pass writes a circle only
// when its state changed, so its digest must not depend on map order.
func TestIdleCircleNotRewritten(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two libp2p nodes")
	}
	root := t.TempDir()
	shared := filepath.Join(root, "shared")
	os.MkdirAll(shared, 0o755)
	a := startNode(t, "alice", filepath.Join(root, "a"), shared)
	b := startNode(t, "bob", filepath.Join(root, "b"), shared)
	_, ca, _ := twoMembers(t, a, b)
	// Stopped, the node changes the circle no more (keys still arriving
	// would): what remains to vary is the order of the state's maps.
	a.stop()
	b.stop()
	first, err := a.n.circleSum(ca)
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		sum, err := a.n.circleSum(ca)
		if err != nil {
			t.Fatal(err)
		}
		if sum != first {
			t.Fatal("the digest of an unchanged circle changed: maintenance would rewrite it every minute")
		}
	}
	// A change shows: an invite is part of the state.
	if _, err := ca.NewInvite("", time.Hour); err != nil {
		t.Fatal(err)
	}
	if sum, _ := a.n.circleSum(ca); sum == first {
		t.Fatal("the digest did not change with the state")
	}
}

// TestNextRound: presence rounds start on the same clock instants for every
// member, at least half an interval apart, within roundSpread after them.
func TestNextRound(t *testing.T) {
	base := time.Date(2026, 12, 2, 15, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		now      time.Time
		interval time.Duration
		at       time.Time // the round's start
	}{
		{"mid round", base.Add(2 * time.Minute), 5 * time.Minute, base.Add(5 * time.Minute)},
		{"just after a start", base.Add(time.Second), 5 * time.Minute, base.Add(5 * time.Minute)},
		{"too close to the next start", base.Add(4*time.Minute + 50*time.Second), 5 * time.Minute, base.Add(10 * time.Minute)},
		{"short interval", base.Add(2 * time.Second), 3 * time.Second, base.Add(6 * time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 50 {
				got := tt.now.Add(nextRound(tt.now, tt.interval))
				spread := min(roundSpread, tt.interval/10)
				if got.Before(tt.at) || got.After(tt.at.Add(spread)) {
					t.Fatalf("next round at %v, want within [%v, %v]", got, tt.at, tt.at.Add(spread))
				}
			}
		})
	}
}
