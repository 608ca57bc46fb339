// Command remora is the one remora binary: the daemon, the CLI that talks to
// it, the demo, and the built-in adapters (run as subprocesses of the daemon
// through `remora adapter NAME`).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/remora-p2p/remora/sdk"
)

// app holds the global flags.
type app struct {
	home     string
	logLevel string
}

func main() {
	a := &app{}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := a.root().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "remora:", err)
		os.Exit(1)
	}
}

func defaultHome() string {
	if h := os.Getenv("REMORA_HOME"); h != "" {
		return h
	}
	if s := os.Getenv("XDG_STATE_HOME"); s != "" {
		return filepath.Join(s, "remora")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "remora")
	}
	return ".remora"
}

func (a *app) root() *cobra.Command {
	root := &cobra.Command{
		Use:   "remora",
		Short: "Peer-to-peer messaging for a circle of friends, with no server anyone must run",
		Long: `remora turns services your circle already has — a mail account or list, a Matrix
room, a shared git repository, a Mastodon account, a synced folder — into
encrypted rendezvous points and mailboxes, and connects you directly when it can.

Start with:  remora demo`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&a.home, "home", defaultHome(), "state directory (config, keys, store, socket); env REMORA_HOME")
	root.PersistentFlags().StringVar(&a.logLevel, "log-level", "info", "debug, info, warn or error")
	root.AddCommand(
		a.initCmd(), a.runCmd(), a.statusCmd(), a.sendCmd(), a.listenCmd(), a.peersCmd(),
		a.doctorCmd(), a.inviteCmd(), a.joinCmd(), a.channelCmd(), a.circleCmd(), a.adapterCmd(), a.demoCmd(),
		a.bootstrapCmd(),
	)
	return root
}

func (a *app) logger() *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(a.logLevel)); err != nil {
		lvl = slog.LevelInfo
	}
	// Quiet: repeated warnings (a hostile channel's junk, an outage that
	// lasts) are written once and then counted.
	return slog.New(sdk.NewQuietHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}), sdk.QuietOptions{}))
}

func (a *app) configPath() string { return filepath.Join(a.home, "config.toml") }
func (a *app) socketPath() string { return filepath.Join(a.home, "api.sock") }

// usageError is a mistake in how a command was called.
func usageError(format string, args ...any) error {
	return errors.New(strings.TrimSpace(fmt.Sprintf(format, args...)))
}
