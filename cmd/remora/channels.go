package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/remora-p2p/remora/core/node"
	"github.com/remora-p2p/remora/git"
	"github.com/remora-p2p/remora/mastodon"
	"github.com/remora-p2p/remora/matrix"
	"github.com/remora-p2p/remora/plugins"
	"github.com/remora-p2p/remora/sdk"
)

func (a *app) channelCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "channel", Short: "Add, list and remove channels (services the circle shares)"}
	cmd.AddCommand(a.channelAddCmd(), a.channelListCmd(), a.channelRemoveCmd(), a.channelCompactCmd())
	return cmd
}

func (a *app) channelAddCmd() *cobra.Command {
	var adapter, id string
	var sets, secrets []string
	var allowBoard bool
	cmd := &cobra.Command{
		Use:   "add NAME",
		Short: "Add a channel to config.toml (restart the daemon to use it)",
		Example: `  remora channel add shared --adapter dir --set path=~/Sync/remora
  remora channel add mail --adapter imap --id friends-list --set mode=list --set imap=imap.example.org:993 \
      --set smtp=smtp.example.org:465 --set username=me@example.org --set address=me@example.org --set list_address=friends@lists.example.org \
      --secret password=command:"pass show mail/remora"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			names := adapterNames(a.home)
			cfg, err := loadConfig(a.configPath(), names)
			if err != nil {
				return err
			}
			if adapter == "" {
				adapter = prompt(cmd, "Adapter ("+strings.Join(names, ", ")+")", "dir")
			}
			cc := ChannelConfig{Name: args[0], Adapter: adapter, ID: id, Config: map[string]any{}, Secrets: map[string]SecretRef{}}
			for _, s := range sets {
				k, v, ok := strings.Cut(s, "=")
				if !ok {
					return usageError("--set %q: want key=value", s)
				}
				cc.Config[k] = typed(v)
			}
			if len(sets) == 0 && adapter == "dir" {
				cc.Config["path"] = prompt(cmd, "Shared folder path", "")
			}
			for _, s := range secrets {
				k, v, ok := strings.Cut(s, "=")
				src, val, ok2 := strings.Cut(v, ":")
				if !ok || !ok2 {
					return usageError("--secret %q: want key=env:VAR, key=file:PATH or key=command:CMD", s)
				}
				switch src {
				case "env":
					cc.Secrets[k] = SecretRef{Env: val}
				case "file":
					cc.Secrets[k] = SecretRef{File: val}
				case "command", "cmd":
					cc.Secrets[k] = SecretRef{Command: val}
				default:
					return usageError("--secret %q: source must be env, file or command", s)
				}
			}
			if _, ok := cc.Secrets["token"]; cc.Adapter == "mastodon" && !ok {
				if err := a.mastodonLogin(cmd, &cc); err != nil {
					return err
				}
			}
			if cc.Adapter == "matrix" {
				if err := a.setUpMatrix(cmd, &cc, allowBoard); err != nil {
					return err
				}
			}
			if slices.ContainsFunc(cfg.Channels, func(c ChannelConfig) bool { return c.Name == cc.Name }) {
				return usageError("a channel named %q exists; remove it first (remora channel remove %s)", cc.Name, cc.Name)
			}
			cfg.Channels = append(cfg.Channels, cc)
			if err := cfg.validate(a.configPath(), names); err != nil {
				return err
			}
			if err := saveConfig(a.configPath(), cfg); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "channel %s added; check it with `remora doctor`, then restart the daemon\n", cc.Name)
			return nil
		},
	}
	cmd.Flags().StringVar(&adapter, "adapter", "", "adapter kind")
	cmd.Flags().StringVar(&id, "id", "", "circle-wide channel ID, the same on every member's device (default: NAME)")
	cmd.Flags().StringArrayVar(&sets, "set", nil, "adapter setting key=value (repeatable)")
	cmd.Flags().StringArrayVar(&secrets, "secret", nil, "secret key=env:VAR|file:PATH|command:CMD (repeatable)")
	cmd.Flags().BoolVar(&allowBoard, "allow-board", false, "matrix: let every member publish presence as room state (needs an admin account)")
	return cmd
}

// setUpMatrix helps pick the room (when none is given) and, for a room whose
// power levels keep members from publishing presence as state, offers to
// lower that level when the account may.
func (a *app) setUpMatrix(cmd *cobra.Command, cc *ChannelConfig, allowBoard bool) error {
	ctx := cmd.Context()
	raw, err := cc.adapterConfig()
	if err != nil {
		return err
	}
	secrets, err := cc.resolveSecrets(ctx)
	if err != nil {
		return err
	}
	req := sdk.ConfigureRequest{ChannelID: cc.Name, Config: raw, Secrets: secrets,
		StateDir: filepath.Join(a.home, "adapters", cc.Name), Logger: a.logger()}
	if err := os.MkdirAll(req.StateDir, 0o700); err != nil {
		return err
	}
	rooms, err := matrix.JoinedRooms(ctx, req)
	if err != nil {
		return fmt.Errorf("matrix: list your rooms: %w (%s)", err, node.Advice(err))
	}
	var room *matrix.Room
	if want, ok := cc.Config["room"].(string); ok && want != "" {
		for i := range rooms {
			if rooms[i].ID == want || rooms[i].Alias == want {
				room = &rooms[i]
			}
		}
	} else {
		if !term.IsTerminal(int(os.Stdin.Fd())) {
			return usageError("matrix: give the room with --set room=!id:server or #alias:server")
		}
		w := cmd.OutOrStdout()
		fmt.Fprintln(w, "Rooms this account has joined:")
		for i, r := range rooms {
			note := ""
			if r.Encrypted {
				note = "  (end-to-end encrypted: not supported, remora's envelopes are already encrypted)"
			}
			fmt.Fprintf(w, "  %2d  %-30s %-30s %d members%s\n", i+1, orDash(r.Name), orDash(r.Alias), r.Members, note)
		}
		n, err := strconv.Atoi(prompt(cmd, "Room number", "1"))
		if err != nil || n < 1 || n > len(rooms) {
			return usageError("matrix: no room number %q", strconv.Itoa(n))
		}
		room = &rooms[n-1]
		cc.Config["room"] = room.ID
	}
	// The board uses state events only when every member may send them,
	// so what counts is the members' level, not this account's.
	if room == nil || room.MembersMayPublish {
		return nil // joined later by Configure, or state events allowed
	}
	if !room.CanSetPower {
		fmt.Fprintf(cmd.OutOrStdout(), "note: this room needs power level %d for presence state and members get %d; this account may not change that, so presence goes to the room's timeline instead (doctor says so). A room admin can run this command to change it.\n", room.BoardLevel, room.MemberLevel)
		return nil
	}
	if !allowBoard && strings.ToLower(prompt(cmd, fmt.Sprintf("Let every member publish presence as room state (power level %d → 0)? [y/N]", room.BoardLevel), "n")) != "y" {
		return nil
	}
	cfg, _ := cc.adapterConfig()
	req.Config = cfg
	if err := matrix.AllowBoard(ctx, req, 0); err != nil {
		return fmt.Errorf("matrix: set power levels: %w", err)
	}
	fmt.Fprintln(cmd.OutOrStdout(), "room power levels updated: every member can publish presence as state")
	return nil
}

// typed reads numbers, booleans and [a,b] lists in --set values as such.
func typed(v string) any {
	if inner, ok := strings.CutPrefix(v, "["); ok && strings.HasSuffix(inner, "]") {
		list := []any{}
		for _, item := range strings.Split(strings.TrimSuffix(inner, "]"), ",") {
			if item = strings.TrimSpace(item); item != "" {
				list = append(list, item)
			}
		}
		return list
	}
	if b, err := strconv.ParseBool(v); err == nil {
		return b
	}
	if i, err := strconv.ParseInt(v, 10, 64); err == nil {
		return i
	}
	return v
}

func (a *app) channelListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List channels: from the daemon with their health, else from config.toml",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			defer tw.Flush()
			if chans, err := a.client().Channels(cmd.Context()); err == nil {
				fmt.Fprintln(tw, "NAME\tADAPTER\tSTATE\tBOARD\tPUSH\tMESSAGE")
				for _, c := range chans {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%v\t%s\n", c.Name, c.Adapter, c.State, c.Board, c.Push, c.Message)
				}
				return nil
			}
			cfg, err := loadConfig(a.configPath(), adapterNames(a.home))
			if err != nil {
				return err
			}
			fmt.Fprintln(tw, "NAME\tADAPTER\tID\t(daemon not running)")
			for _, c := range cfg.Channels {
				fmt.Fprintf(tw, "%s\t%s\t%s\t\n", c.Name, c.Adapter, orDash(c.ID))
			}
			return nil
		},
	}
}

func (a *app) channelRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a channel from config.toml (restart the daemon)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(a.configPath(), adapterNames(a.home))
			if err != nil {
				return err
			}
			before := len(cfg.Channels)
			cfg.Channels = slices.DeleteFunc(cfg.Channels, func(c ChannelConfig) bool { return c.Name == args[0] })
			if len(cfg.Channels) == before {
				return usageError("no channel named %q (see `remora channel list`)", args[0])
			}
			if err := saveConfig(a.configPath(), cfg); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "channel %s removed; restart the daemon\n", args[0])
			return nil
		},
	}
}

func (a *app) adapterCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "adapter NAME [describe]",
		Short: "Serve a built-in adapter (the daemon runs this), or describe, install and list adapters",
		Long: `remora adapter NAME            serve the built-in adapter NAME over the plugin protocol
remora adapter NAME describe   print its capabilities as JSON
remora adapter install PATH    install a third-party adapter (pinned by SHA-256)
remora adapter list            list built-in and installed adapters`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if kinds := plugins.SplitKinds(args[0]); len(kinds) > 1 {
				// several built-ins in one process (adapter_processes = "shared")
				set := map[string]sdk.Adapter{}
				for _, k := range kinds {
					newAdapter, ok := builtins[k]
					if !ok {
						return fmt.Errorf("unknown built-in adapter %q (built in: %s)", k, strings.Join(builtinNames(), ", "))
					}
					set[k] = newAdapter()
				}
				return sdk.ServeMany(set, sdk.WithArgs(args[1:]))
			}
			newAdapter, ok := builtins[args[0]]
			if !ok {
				return fmt.Errorf("unknown adapter %q (available: %s)", args[0], strings.Join(adapterNames(a.home), ", "))
			}
			return sdk.Serve(newAdapter(), sdk.WithArgs(args[1:]))
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "install PATH",
		Short: "Install a third-party adapter executable into the plugins directory",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sup := newSupervisor(a.home, a.logger(), nil)
			defer sup.Close()
			inst, err := sup.Install(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "installed %s (sha256 %s)\n", inst.Name, inst.SHA256)
			return nil
		},
	}, &cobra.Command{
		Use:   "list",
		Short: "List adapters",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, n := range adapterNames(a.home) {
				kind := "installed"
				if _, ok := builtins[n]; ok {
					kind = "built-in"
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%-10s %s\n", n, kind)
			}
			return nil
		},
	})
	return cmd
}

func (a *app) channelCompactCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "compact NAME",
		Short: "Squash a git channel's history to what is retained (other members rescan)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(a.configPath(), adapterNames(a.home))
			if err != nil {
				return err
			}
			i := slices.IndexFunc(cfg.Channels, func(c ChannelConfig) bool { return c.Name == args[0] })
			if i < 0 {
				return usageError("no channel named %q (see `remora channel list`)", args[0])
			}
			cc := cfg.Channels[i]
			if cc.Adapter != "git" {
				return usageError("channel %s uses the %s adapter; only git channels have a history to compact", cc.Name, cc.Adapter)
			}
			raw, err := cc.adapterConfig()
			if err != nil {
				return err
			}
			secrets, err := cc.resolveSecrets(cmd.Context())
			if err != nil {
				return err
			}
			req := sdk.ConfigureRequest{ChannelID: cc.Name, Config: raw, Secrets: secrets,
				StateDir: filepath.Join(a.home, "adapters", cc.Name), Logger: a.logger()}
			if err := git.CompactConfig(cmd.Context(), req); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "channel %s compacted; other members rescan it on their next fetch\n", cc.Name)
			return nil
		},
	}
}

// mastodonLogin registers remora as an app on the server, runs the OAuth
// authorization-code flow with the out-of-band redirect (the user opens a
// URL, approves, and pastes the code: not every server offers the password
// grant), and stores the token in a 0600 file the channel's secret names.
func (a *app) mastodonLogin(cmd *cobra.Command, cc *ChannelConfig) error {
	server, _ := cc.Config["server"].(string)
	if server == "" {
		return usageError("mastodon: give the server with --set server=https://your.instance")
	}
	if !term.IsTerminal(int(os.Stdin.Fd())) {
		return usageError("mastodon: no token given: run this in a terminal to authorize remora, or pass --secret token=env:VAR")
	}
	ctx := cmd.Context()
	app, err := mastodon.RegisterApp(ctx, server, mastodon.AppName)
	if err != nil {
		return fmt.Errorf("mastodon: register the app: %w", err)
	}
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "Open this address, sign in and approve the app %q (remora registers under a neutral name: the server shows it, and may show it on posts):\n\n  %s\n\n", mastodon.AppName, app.AuthCodeURL())
	code := prompt(cmd, "Then paste the code shown", "")
	if code == "" {
		return usageError("mastodon: no code given")
	}
	token, err := app.ExchangeCode(ctx, code)
	if err != nil {
		return fmt.Errorf("mastodon: exchange the code: %w", err)
	}
	dir := filepath.Join(a.home, "secrets")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	path := filepath.Join(dir, cc.Name+".token")
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		return fmt.Errorf("mastodon: save the token: %w", err)
	}
	cc.Secrets["token"] = SecretRef{File: path}
	fmt.Fprintf(w, "authorized; the token is in %s (mode 0600)\n", path)
	return nil
}
