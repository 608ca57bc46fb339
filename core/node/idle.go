package node

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"maps"
	"slices"
	"time"

	"github.com/remora-p2p/remora/core/circle"
)

// An idle node should cost nothing: no loop wakes it unless it has work,
// and the slow periodic ones (presence, board polls, peer exchange,
// maintenance, the outbox sweep) wake together. Each wake-up of a Go
// process is a thread woken from the kernel, the scheduler's spinning and
// the runtime's monitor; a few a second cost more CPU than the work they do
// (BENCHMARKS.md, "Idle cost"). Timers that fire at the same instant cost
// one wake-up, so waits of coalesceMin or more end on a whole second of
// the clock, like Linux's timer slack and the timer coalescing of mobile
// systems.

// coalesceMin is the shortest wait that is rounded to the grid.
const coalesceMin = 2 * time.Second

// coalesceGrid is the grid slow timers fire on.
const coalesceGrid = time.Second

// coalesce returns d, lengthened (by less than coalesceGrid) so that it
// ends on the grid when d is at least coalesceMin.
func coalesce(d time.Duration) time.Duration {
	if d < coalesceMin {
		return d
	}
	end := time.Now().Add(d)
	if r := end.Sub(end.Truncate(coalesceGrid)); r > 0 {
		d += coalesceGrid - r
	}
	return d
}

// circleSum is a digest of what saveCircle writes for c: its state and
// its log. The state's sender chains come in map order, so they are sorted
// first: the same state always gives the same digest.
func (n *Node) circleSum(c *circle.Circle) ([32]byte, error) {
	st, err := c.State()
	if err != nil {
		return [32]byte{}, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(st, &fields); err != nil {
		return [32]byte{}, err
	}
	var chains []json.RawMessage
	if raw, ok := fields["chains"]; ok {
		if err := json.Unmarshal(raw, &chains); err != nil {
			return [32]byte{}, err
		}
		slices.SortFunc(chains, func(a, b json.RawMessage) int { return bytes.Compare(a, b) })
	}
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		h.Write([]byte(k))
		if k == "chains" {
			for _, ch := range chains {
				h.Write(ch)
			}
			continue
		}
		h.Write(fields[k])
	}
	for _, op := range c.Ops() {
		var l [8]byte
		binary.BigEndian.PutUint64(l[:], uint64(len(op)))
		h.Write(l[:])
		h.Write(op)
	}
	return [32]byte(h.Sum(nil)), nil
}
