package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/core/identity"
	"github.com/remora-p2p/remora/core/node"
	"github.com/remora-p2p/remora/sdk"
)

func (a *app) client() *api.Client { return api.NewClient(a.socketPath()) }

func (a *app) initCmd() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create this device's identity and configuration",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" {
				name = prompt(cmd, "Your display name in circles", hostname())
			}
			if err := os.MkdirAll(a.home, 0o700); err != nil {
				return err
			}
			k, err := identity.Open(filepath.Join(a.home, "keys"), identity.Options{})
			if err != nil {
				return err
			}
			if _, err := os.Stat(a.configPath()); errors.Is(err, os.ErrNotExist) {
				if err := saveConfig(a.configPath(), &Config{Name: name, Relay: askRelay(cmd)}); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "identity: %s\nconfig:   %s\nnext:     add a channel (remora channel add), then start the daemon (remora run)\n",
				k.Identity().PeerID(), a.configPath())
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "your display name")
	return cmd
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

// prompt asks on the terminal, or returns def when stdin is not one.
func prompt(cmd *cobra.Command, question, def string) string {
	if !term.IsTerminal(int(os.Stdin.Fd())) {
		return def
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s [%s]: ", question, def)
	line, _ := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
	if line = strings.TrimSpace(line); line != "" {
		return line
	}
	return def
}

func (a *app) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show this node: identity, addresses, circles",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := a.client().Status(cmd.Context())
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "peer:         %s\nready:        %v (since %s)\nreachability: %s\nNAT:          %s\n", st.PeerID, st.Ready, st.Started.Format(time.TimeOnly), st.Reachability, st.NAT)
			for _, l := range st.ListenAddrs {
				fmt.Fprintf(w, "listen:       %s\n", l)
			}
			fmt.Fprintf(w, "outbox:       %d waiting for an ack\n", st.Outbox)
			for _, c := range st.Circles {
				fmt.Fprintf(w, "circle:       %s %q, %d members\n", c.ID, c.Name, len(c.Members))
				for _, m := range c.Members {
					fmt.Fprintf(w, "  %-10s %-7s %s\n", m.Name, m.Role, m.PeerID)
				}
			}
			return nil
		},
	}
}

func (a *app) sendCmd() *cobra.Command {
	var circle string
	var to []string
	cmd := &cobra.Command{
		Use:   "send [--to NAME]... TEXT",
		Short: "Send a message to the circle (or to some members with --to)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := a.client().Send(cmd.Context(), api.SendRequest{Circle: circle, To: to, Text: strings.Join(args, " ")})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "accepted %s\n", res.ID)
			return nil
		},
	}
	cmd.Flags().StringVar(&circle, "circle", "", "circle ID (needed when you are in several)")
	cmd.Flags().StringSliceVar(&to, "to", nil, "member name or peer ID (repeatable); default everyone")
	return cmd
}

func (a *app) listenCmd() *cobra.Command {
	var follow bool
	cmd := &cobra.Command{
		Use:   "listen",
		Short: "Print incoming messages from your acked position and ack them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := a.client()
			ctx := cmd.Context()
			for {
				msgs, err := c.Messages(ctx, -1, waitFor(follow))
				if err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return err
				}
				for _, m := range msgs {
					printMessage(cmd.OutOrStdout(), m)
					if err := c.Ack(ctx, m.Seq); err != nil {
						return err
					}
				}
				if !follow && len(msgs) == 0 {
					return nil
				}
			}
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", true, "keep waiting for new messages")
	return cmd
}

func waitFor(follow bool) time.Duration {
	if follow {
		return 30 * time.Second
	}
	return 0
}

func printMessage(w io.Writer, m api.Message) {
	from := m.FromName
	if from == "" {
		from = m.From
	}
	kind := "to all"
	if m.Direct {
		kind = "to you"
	}
	body := m.Text
	if body == "" {
		body = fmt.Sprintf("(%d bytes)", len(m.Body))
	}
	fmt.Fprintf(w, "%s  %s %s via %s: %s\n", m.Sent.Local().Format(time.DateTime), from, kind, m.Path, body)
}

func (a *app) peersCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "peers",
		Short: "Show how each circle member is reached: path now, the box whose address made it, last seen, which box found it first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			peers, err := a.client().Peers(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tPATH\tVIA BOX\tLAST SEEN\tFOUND BY\tPEER")
			for _, p := range peers {
				seen := "never"
				if !p.LastSeen.IsZero() {
					seen = time.Since(p.LastSeen).Round(time.Second).String() + " ago"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.Path, orDash(p.Via), seen, orDash(p.FoundBy), p.PeerID)
			}
			return tw.Flush()
		},
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (a *app) doctorCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Check identity, config, every channel and connectivity, and say what to fix",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.doctor(cmd, cmd.OutOrStdout())
		},
	}
}

// doctor asks the daemon when it runs; otherwise it checks offline by
// configuring each channel once.
func (a *app) doctor(cmd *cobra.Command, w io.Writer) error {
	ctx := cmd.Context()
	ok := true
	say := func(good bool, what, detail string) {
		mark := "ok  "
		if !good {
			mark, ok = "FAIL", false
		}
		fmt.Fprintf(w, "%s %-22s %s\n", mark, what, detail)
	}
	k, err := identity.Load(filepath.Join(a.home, "keys"), identity.Options{})
	if err != nil {
		say(false, "identity", err.Error()+" — run `remora init`")
		return errors.New("doctor found problems")
	}
	say(true, "identity", k.Identity().PeerID().String())
	cfg, err := loadConfig(a.configPath(), adapterNames(a.home))
	if err != nil {
		say(false, "config", err.Error())
		return errors.New("doctor found problems")
	}
	say(true, "config", a.configPath())
	consent := a.doctorRelay(cmd, w, cfg)
	if cfg.AdapterProcesses == "separate" {
		say(true, "adapter processes", "one per adapter kind (adapter_processes = \"separate\")")
	} else {
		say(true, "adapter processes", "the built-in adapters share one (adapter_processes = \"shared\")")
	}
	var chans []api.Channel
	st, err := a.client().Status(ctx)
	if err == nil {
		say(true, "daemon", fmt.Sprintf("running, reachability %s, NAT %s", st.Reachability, st.NAT))
		for _, l := range st.ListenAddrs {
			fmt.Fprintf(w, "     listen                 %s\n", l)
		}
		if st.ListenPorts != "" {
			fmt.Fprintf(w, "     listen ports           %s\n", st.ListenPorts)
		}
		doctorNAT(w, consent, st, time.Now())
		if chans, err = a.client().Channels(ctx); err != nil {
			return err
		}
		if good, err := a.doctorBoxes(ctx, w); err != nil || !good {
			say(false, "bootstrap boxes", "a box is failing: see its fix above")
		}
		if err := a.doctorMembership(ctx, w); err != nil {
			return err
		}
		ok = doctorRoster(w, st.Circles, time.Now()) && ok
		doctorMailbox(w, st)
		ok = doctorHeld(w, st.Held) && ok
	} else {
		say(errors.Is(err, api.ErrNotRunning), "daemon", "not running (start it with `remora run`); checking channels directly")
		say(true, "relay", fmt.Sprintf("relay = %q (the daemon shows the NAT and who relays for whom)", consent))
		sup := newSupervisor(a.home, a.logger(), cfg)
		defer sup.Close()
		for _, nc := range openChannels(ctx, sup, a.home, cfg, a.logger()) {
			c := api.Channel{Name: nc.Name, Adapter: nc.Adapter, State: string(sdk.HealthOK)}
			if nc.Err != nil {
				c.State, c.Message, c.Advice = string(sdk.HealthDown), nc.Err.Error(), node.Advice(nc.Err)
			}
			chans = append(chans, c)
		}
	}
	if len(chans) == 0 {
		say(false, "channels", "none configured — add one with `remora channel add`")
	}
	for _, c := range chans {
		detail := c.Adapter + ": " + c.State
		if c.Message != "" {
			detail += " — " + c.Message
		}
		say(c.State == string(sdk.HealthOK), "channel "+c.Name, detail)
		if c.Advice != "" {
			fmt.Fprintf(w, "     what to do             %s\n", c.Advice)
		}
	}
	if !ok {
		return errors.New("doctor found problems")
	}
	return nil
}

func (a *app) circleCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "circle", Short: "Manage circles"}
	cmd.AddCommand(&cobra.Command{
		Use:   "create NAME",
		Short: "Create a circle with you as its admin",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client().CreateCircle(cmd.Context(), api.CreateCircleRequest{Name: args[0]})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "circle %s %q created; invite friends with `remora invite`\n", c.ID, c.Name)
			return nil
		},
	})
	a.addMembershipCmds(cmd)
	return cmd
}
