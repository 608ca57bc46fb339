package main

import (
	"fmt"
	"io"

	"github.com/remora-p2p/remora/core/api"
)

// heldNearlyFull is the share of the held quota past which doctor warns:
// new envelopes that cannot open yet are about to be refused.
const heldNearlyFull = 0.9

// doctorHeld prints the envelopes held because they cannot open yet, and
// what receiving refused since the daemon started (docs/threat-model.md,
// "Resources"). It returns false when the held quota is nearly full.
func doctorHeld(w io.Writer, h *api.Held) bool {
	if h == nil {
		return true
	}
	mark, ok := "ok  ", true
	if h.QuotaBytes > 0 && float64(h.Bytes) >= heldNearlyFull*float64(h.QuotaBytes) {
		mark, ok = "FAIL", false
	}
	fmt.Fprintf(w, "%s %-22s %d envelope(s) waiting for a key or their other fragments, %s of %s (at most %s per sender)\n",
		mark, "held envelopes", h.Items, size(h.Bytes), size(h.QuotaBytes), size(h.PerSenderBytes))
	if h.DroppedQuota+h.DroppedJoinParts+h.DuplicatesRemoved > 0 {
		fmt.Fprintf(w, "     %-22s %d over a held quota, %d join parts over their bounds, %d duplicates\n", "refused since start", h.DroppedQuota, h.DroppedJoinParts, h.DuplicatesRemoved)
	}
	if !ok || h.DroppedQuota > 0 {
		fmt.Fprintf(w, "     %-22s %s\n", "what to do", "a member sends fragments that never complete, or envelopes under a key it never hands out: the daemon's log names it (\"held envelopes\"); remove the device if it keeps on")
	}
	return ok
}
