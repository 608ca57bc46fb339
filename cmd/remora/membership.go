package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/remora-p2p/remora/core/api"
)

func (a *app) inviteCmd() *cobra.Command {
	var circle, channel string
	var ttl time.Duration
	var inPerson bool
	cmd := &cobra.Command{
		Use:   "invite",
		Short: "Print a single-use invite (text and QR) for a friend's device; you approve its use",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := a.client().Invite(cmd.Context(), api.InviteRequest{Circle: circle, Hint: channel, TTL: api.Duration(ttl), InPerson: inPerson})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "%s\n%s\nvalid until %s; single use.\n", res.QR, res.Invite, res.Expires.Local().Format(time.DateTime))
			if res.InPerson {
				fmt.Fprintln(w, "In person: the first device that uses it joins without approval. Show it face to face only, never send it.")
			} else {
				fmt.Fprintln(w, "When your friend runs `remora join`, their request waits for you: compare the safety code they read to you\nwith `remora circle pending`, then `remora circle approve NAME` (or deny).")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&circle, "circle", "", "circle ID (needed when you are in several)")
	cmd.Flags().StringVar(&channel, "channel", "", "channel ID to meet on (default: your first channel)")
	cmd.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long the invite is valid (at most 24h)")
	cmd.Flags().BoolVar(&inPerson, "in-person", false, "approve its single use in advance (only for a QR code shown face to face)")
	return cmd
}

func (a *app) joinCmd() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "join INVITE",
		Short: "Ask to join a circle with an invite; waits until an admin approves",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			c := a.client()
			st, err := c.Join(ctx, api.JoinRequest{Invite: args[0]})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if st.State == "pending" {
				fmt.Fprintf(w, "join request sent through %s.\nsafety code: %s\n", st.Channel, st.SafetyCode)
				fmt.Fprintf(w, "Read it to the person who invited you: they approve only if `remora circle pending` shows the same code.\nwaiting for approval (up to %s)...\n", timeout)
			}
			for st.State == "pending" {
				st, err = c.JoinStatus(ctx, st.ID, 30*time.Second)
				if ctx.Err() != nil {
					return fmt.Errorf("no answer yet: the request still waits for an admin's approval (safety code %s); "+
						"the daemon keeps waiting until %s: run `remora join INVITE` again to wait, `remora status` shows the circle once you are in",
						st.SafetyCode, st.Expires.Local().Format(time.DateTime))
				}
				if err != nil {
					return err
				}
			}
			if st.State == "refused" {
				return errors.New(st.Error)
			}
			if st.Circle == nil {
				return fmt.Errorf("join ended in state %q", st.State)
			}
			fmt.Fprintf(w, "joined %q (%s), %d members\n", st.Circle.Name, st.Circle.ID, len(st.Circle.Members))
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Minute, "how long to wait here for the approval (the daemon waits on)")
	return cmd
}

// addMembershipCmds adds the approval gate and the roster commands to `remora circle`.
func (a *app) addMembershipCmds(parent *cobra.Command) {
	var circle string
	withCircle := func(c *cobra.Command) *cobra.Command {
		c.Flags().StringVar(&circle, "circle", "", "circle ID (needed when you are in several)")
		return c
	}
	parent.AddCommand(withCircle(&cobra.Command{
		Use:   "pending",
		Short: "List join requests waiting for approval, with the safety code to compare",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			list, err := a.client().Pending(cmd.Context(), circle)
			if err != nil {
				return err
			}
			printPending(cmd.OutOrStdout(), list)
			return nil
		},
	}))
	parent.AddCommand(withCircle(&cobra.Command{
		Use:   "approve NAME|ID",
		Short: "Admit a pending device once its safety code matches the one it shows",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := a.client().Approve(cmd.Context(), api.MemberRequest{Circle: circle, Who: args[0]})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "approved: %s (%s) is now a %s; the welcome is on its way\n", m.Name, m.PeerID, m.Role)
			return nil
		},
	}))
	parent.AddCommand(withCircle(&cobra.Command{
		Use:   "deny NAME|ID",
		Short: "Refuse a pending device; its invite can no longer be used",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.client().Deny(cmd.Context(), api.MemberRequest{Circle: circle, Who: args[0]}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "denied %s; the joiner is told, and that invite is void\n", args[0])
			return nil
		},
	}))
	parent.AddCommand(withCircle(&cobra.Command{
		Use:   "members",
		Short: "List the members: name, role, device, added by whom and when, last seen",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			list, err := a.client().Members(cmd.Context(), circle)
			if err != nil {
				return err
			}
			return printMembers(cmd.OutOrStdout(), list)
		},
	}))
	parent.AddCommand(withCircle(&cobra.Command{
		Use:   "remove NAME|ID",
		Short: "Remove a member, or one lost device by its peer ID (admins)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.client().RemoveMember(cmd.Context(), api.MemberRequest{Circle: circle, Who: args[0]}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s: every member rotates its keys, so it reads nothing sent from now on\n", args[0])
			return nil
		},
	}))
	parent.AddCommand(withCircle(&cobra.Command{
		Use:   "role NAME|ID admin|member",
		Short: "Make a member an admin, or an admin a plain member (admins)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := a.client().SetRole(cmd.Context(), api.MemberRequest{Circle: circle, Who: args[0], Role: args[1]})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s is now a %s\n", m.Name, m.Role)
			return nil
		},
	}))
	parent.AddCommand(withCircle(&cobra.Command{
		Use:   "leave",
		Short: "Leave the circle (this device removes itself)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.client().Leave(cmd.Context(), api.MemberRequest{Circle: circle}); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "left the circle; what you received stays here")
			return nil
		},
	}))
}

func printPending(w io.Writer, list []api.PendingJoin) {
	if len(list) == 0 {
		fmt.Fprintln(w, "no join requests are waiting")
		return
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSAFETY CODE\tCHANNEL\tSINCE\tCIRCLE\tPEER")
	for _, p := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.SafetyCode, p.Channel, p.Since.Local().Format(time.DateTime), p.CircleName, p.PeerID)
	}
	tw.Flush()
	fmt.Fprintln(w, "Approve only when the joiner reads you the same safety code: remora circle approve NAME (or deny NAME).")
}

func printMembers(w io.Writer, list []api.Member) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tDEVICE\tADDED BY\tADDED\tLAST SEEN")
	for _, m := range list {
		name := m.Name
		if m.Self {
			name += " (this device)"
		}
		seen := "never"
		switch {
		case m.Self:
			seen = "now"
		case !m.LastSeen.IsZero():
			seen = time.Since(m.LastSeen).Round(time.Second).String() + " ago"
		}
		by := m.AddedByName
		if by == "" {
			by = m.AddedBy
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", name, m.Role, m.PeerID, by, m.Added.Local().Format(time.DateTime), seen)
	}
	return tw.Flush()
}
