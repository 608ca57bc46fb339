package channeltest

import (
	"bytes"
	"testing"
)

// TestRaceGrowAllocatesTwice: the slack testOversized gives an adapter
// that holds one item, when built with the race detector, is there
// because growing a buffer allocates twice under it (the compiler's
// append-make step is instrumented as a make and a copy). If a toolchain
// stops doing so, this fails and the slack goes.
func TestRaceGrowAllocatesTwice(t *testing.T) {
	allocs := testing.AllocsPerRun(3, func() {
		var b bytes.Buffer
		b.Grow(oversizedBytes)
	})
	want := 1.0
	if raceEnabled {
		want = 2
	}
	if allocs != want {
		t.Errorf("bytes.Buffer.Grow(%d) made %v allocations (race detector %v), want %v", oversizedBytes, allocs, raceEnabled, want)
	}
}
