package main

import (
	"fmt"
	"io"

	"github.com/remora-p2p/remora/core/api"
)

// doctorMailbox prints friends' mailboxes: what this device keeps for
// others (count, bytes), which friends keep our envelopes or delivered
// theirs, and wake-ups.
func doctorMailbox(w io.Writer, st api.Status) {
	m := st.Mailbox
	if m == nil {
		return
	}
	names := map[string]string{}
	for _, c := range st.Circles {
		for _, mem := range c.Members {
			names[mem.PeerID] = mem.Name
		}
	}
	if m.Offered {
		fmt.Fprintf(w, "ok   %-22s keeps %d envelope(s), %s of %s, for %d member(s); kept at most %s\n", "mailbox", m.HeldItems, size(m.HeldBytes), size(m.Quota), m.HeldRecipients, m.Expiry)
	} else {
		fmt.Fprintf(w, "ok   %-22s keeps nothing for friends (turn it on with [mailbox] enabled = true)\n", "mailbox")
	}
	for _, h := range m.Holders {
		who := names[h.PeerID]
		if who == "" {
			who = h.PeerID
		}
		fmt.Fprintf(w, "     %-22s %s keeps %d of our envelope(s) (%s) for offline members; delivered %d kept for us\n", "held by friend", who, h.Items, size(h.Bytes), h.Delivered)
	}
	if m.WakeRegistered > 0 || m.WakePushed+m.WakeChannel+m.WakeLimited+m.WakeFailed > 0 {
		fmt.Fprintf(w, "     %-22s %d sleeping device(s) registered; sent %d push, %d channel; %d held back by the rate limit; %d failed\n", "wake-ups", m.WakeRegistered, m.WakePushed, m.WakeChannel, m.WakeLimited, m.WakeFailed)
	}
	if m.WakeError != "" {
		fmt.Fprintf(w, "     %-22s %s\n", "wake-up error", m.WakeError)
	}
	if m.WakeOwn {
		fmt.Fprintf(w, "     %-22s this device asks friends to wake it ([push])\n", "wake-ups for us")
	}
}

func size(b int64) string {
	switch {
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}
