package main

import (
	"context"
	"fmt"
	"io"
)

// doctorMembership shows, per circle, how many members it has, this
// device's role (or that it was removed), and the join requests waiting
// for an admin's approval.
func (a *app) doctorMembership(ctx context.Context, w io.Writer) error {
	c := a.client()
	members, err := c.Members(ctx, "")
	if err != nil {
		return err
	}
	pending, err := c.Pending(ctx, "")
	if err != nil {
		return err
	}
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	for _, ci := range st.Circles {
		n, role := 0, ""
		for _, m := range members {
			if m.Circle == ci.ID {
				n++
				if m.Self {
					role = m.Role
				}
			}
		}
		detail := fmt.Sprintf("%d members, this device is %s", n, role)
		if role == "" {
			detail = fmt.Sprintf("%d members; this device is no longer one of them (it keeps what it received)", n)
		}
		fmt.Fprintf(w, "ok   %-22s %s\n", "circle "+ci.Name, detail)
		for _, p := range pending {
			if p.Circle == ci.ID {
				fmt.Fprintf(w, "     %-22s %s (safety code %s, since %s): `remora circle approve %s` once the codes match\n",
					"waiting for approval", p.Name, p.SafetyCode, p.Since.Local().Format("15:04"), p.Name)
			}
		}
	}
	return nil
}
