package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/remora-p2p/remora/core/api"
)

// doctorBoxes prints the bootstrap boxes table (docs/discovery.md): for
// each box, cheapest first, whether it is configured, its last attempt and
// success, how many members it found, and what to do when it fails. It
// returns false when a configured box is failing.
func (a *app) doctorBoxes(ctx context.Context, w io.Writer) (bool, error) {
	boxes, err := a.client().Boxes(ctx)
	if err != nil {
		return false, err
	}
	fmt.Fprintln(w, "bootstrap boxes (cheapest first):")
	printBoxes(w, boxes, time.Now())
	ok := true
	for _, b := range boxes {
		if b.State == "failing" {
			ok = false
		}
	}
	return ok, nil
}

func printBoxes(w io.Writer, boxes []api.Box, now time.Time) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "     BOX\tSTATE\tCONFIGURED\tLAST ATTEMPT\tLAST SUCCESS\tFOUND")
	for _, b := range boxes {
		conf := "no"
		if b.Configured {
			conf = "yes"
		}
		fmt.Fprintf(tw, "     %s\t%s\t%s\t%s\t%s\t%d\n", b.Name, b.State, conf, ago(b.LastAttempt, now), ago(b.LastSuccess, now), b.Found)
	}
	tw.Flush()
	for _, b := range boxes {
		if b.Detail != "" {
			fmt.Fprintf(w, "     %-22s %s\n", b.Name, b.Detail)
		}
		if b.Error != "" {
			fmt.Fprintf(w, "     %-22s %s\n", b.Name+" error", b.Error)
		}
		if b.Fix != "" && (b.Error != "" || b.Configured) {
			fmt.Fprintf(w, "     %-22s %s\n", b.Name+" fix", b.Fix)
		}
	}
}

func ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return now.Sub(t).Round(time.Second).String() + " ago"
}
