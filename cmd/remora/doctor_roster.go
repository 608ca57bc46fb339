package main

import (
	"fmt"
	"io"
	"time"

	"github.com/remora-p2p/remora/core/api"
)

// Past these, doctor calls a roster unhealthy: an operation should get its
// parents within a few delivery rounds, and the daemon publishes a rotated
// prekey within a minute.
const (
	rosterWaitingTooLong = time.Hour
	prekeyStaleTooLong   = time.Hour
)

// doctorRoster prints, per circle, the roster log's size, the operations
// waiting for their parents, and whether the roster holds this device's
// current box prekey (docs/circle.md). It returns false when something
// needs attention.
func doctorRoster(w io.Writer, circles []api.Circle, now time.Time) bool {
	ok := true
	for _, c := range circles {
		r := c.Roster
		if r == nil {
			continue
		}
		mark, detail := "ok  ", fmt.Sprintf("%d operations", r.Ops)
		var fix string
		switch {
		case !r.Member:
			mark, detail = "FAIL", detail+"; this device is no longer a member"
			fix = "an admin removed it: ask one to invite it again"
		case !r.PrekeyCurrent && now.Sub(r.KeyCreated) > prekeyStaleTooLong:
			mark, detail = "FAIL", detail+fmt.Sprintf("; the roster holds this device's prekey of %s, not the current one of %s",
				r.PrekeyCreated.Local().Format(time.DateOnly), r.KeyCreated.Local().Format(time.DateOnly))
			fix = "the daemon publishes it every minute: see its log for \"publish prekey\""
		default:
			detail += fmt.Sprintf("; this device's prekey (made %s) is published", r.PrekeyCreated.Local().Format(time.DateOnly))
		}
		if r.Waiting > 0 {
			detail += fmt.Sprintf("; %d waiting for their parents since %s", r.Waiting, ago(r.OldestWaiting, now))
			if now.Sub(r.OldestWaiting) > rosterWaitingTooLong {
				mark = "FAIL"
				fix = "the members that sent them have not answered for the missing operations: they may be offline (operations wait up to 14 days)"
			}
		}
		if mark != "ok  " {
			ok = false
		}
		fmt.Fprintf(w, "%s %-22s %s\n", mark, "roster "+c.Name, detail)
		if fix != "" {
			fmt.Fprintf(w, "     what to do             %s\n", fix)
		}
	}
	return ok
}
