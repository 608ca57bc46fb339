package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/core/identity"
	"github.com/remora-p2p/remora/core/node"
	"github.com/remora-p2p/remora/core/notify"
	"github.com/remora-p2p/remora/core/store"
	"github.com/remora-p2p/remora/core/transport"
	"github.com/remora-p2p/remora/plugins"
	"github.com/remora-p2p/remora/sdk"
)

// daemon is one running node with its adapters and (optionally) its API.
type daemon struct {
	home string
	log  *slog.Logger
	node *node.Node
	db   *store.DB
	sup  *plugins.Supervisor
	ln   net.Listener
	hook *notify.Hook // the [push] notify command
}

// daemonOptions adjust a daemon for the demo and tests.
type daemonOptions struct {
	API              bool
	PresenceInterval time.Duration
	BoardPoll        time.Duration
}

// newSupervisor runs the built-in adapters in one process unless cfg
// (which may be nil) says adapter_processes = "separate".
func newSupervisor(home string, log *slog.Logger, cfg *Config) *plugins.Supervisor {
	o := plugins.Options{Dir: filepath.Join(home, "plugins"), Builtins: builtinNames(), Together: builtinNames(), Logger: log}
	if cfg != nil && cfg.AdapterProcesses == "separate" {
		o.Together = nil
	}
	return plugins.New(o)
}

// adapterNames lists built-in and installed adapters.
func adapterNames(home string) []string {
	sup := newSupervisor(home, slog.New(slog.DiscardHandler), nil)
	defer sup.Close()
	return sup.Adapters()
}

// openChannels configures every channel through the supervisor. A channel
// that fails is kept with its error, for doctor; the others run.
func openChannels(ctx context.Context, sup *plugins.Supervisor, home string, cfg *Config, log *slog.Logger) []node.Channel {
	var out []node.Channel
	for _, cc := range cfg.Channels {
		nc := node.Channel{Name: cc.Name, ID: cc.ID, Adapter: cc.Adapter, To: cc.To}
		raw, err := cc.adapterConfig()
		if err == nil {
			var secrets map[string]string
			secrets, err = cc.resolveSecrets(ctx)
			if err == nil {
				state := filepath.Join(home, "adapters", cc.Name)
				if err = os.MkdirAll(state, 0o700); err == nil {
					var ch *plugins.Channel
					ch, err = sup.Open(ctx, cc.Adapter, sdk.ConfigureRequest{ChannelID: cc.Name, Config: raw, Secrets: secrets, StateDir: state})
					if err == nil {
						nc.Impl = ch
					}
				}
			}
		}
		if err != nil {
			log.Error("channel not started", "channel", cc.Name, "err", err, "advice", node.Advice(err))
			nc.Err = err
		}
		out = append(out, nc)
	}
	return out
}

func openDaemon(ctx context.Context, home string, cfg *Config, log *slog.Logger, o daemonOptions) (*daemon, error) {
	k, err := identity.Load(filepath.Join(home, "keys"), identity.Options{})
	if errors.Is(err, identity.ErrNoKeyring) {
		return nil, fmt.Errorf("no identity in %s: run `remora init` first", home)
	}
	if err != nil {
		return nil, err
	}
	d := &daemon{home: home, log: log}
	d.db, err = store.Open(filepath.Join(home, "remora.db"), store.Options{})
	if err != nil {
		return nil, err
	}
	if o.API {
		if d.ln, err = api.Listen(filepath.Join(home, "api.sock")); err != nil {
			d.db.Close()
			return nil, err
		}
	}
	d.sup = newSupervisor(home, log, cfg)
	chans := openChannels(ctx, d.sup, home, cfg, log)
	nopts := node.Options{Keyring: k, Store: d.db, Logger: log, Name: cfg.Name, ListenAddrs: cfg.Listen,
		KeepPorts: !cfg.ListenNewPorts, Channels: chans, PresenceInterval: o.PresenceInterval, BoardPollInterval: o.BoardPoll}
	if cfg.PresenceInterval != "" {
		nopts.PresenceInterval, _ = time.ParseDuration(cfg.PresenceInterval)
	}
	if cfg.Relay == RelayYes { // consent given; promoted only once reachable and up a while
		nopts.Relay = &transport.RelayOptions{}
	}
	cfg.applyMailbox(&nopts)
	d.hook = cfg.notifyHook()
	if err := cfg.applyBoxes(ctx, &nopts); err != nil {
		d.close()
		return nil, err
	}
	d.node, err = node.New(ctx, nopts)
	if err != nil {
		d.close()
		return nil, err
	}
	return d, nil
}

// run runs the node (and API) until ctx ends.
func (d *daemon) run(ctx context.Context) error {
	errc := make(chan error, 2)
	if d.ln != nil {
		go func() { errc <- api.Serve(ctx, d.ln, d.node, d.log) }()
	}
	if d.hook != nil {
		d.hook.Logger = d.log
		go func() {
			if err := d.hook.Run(ctx, d.node); err != nil {
				d.log.Error("notify hook stopped", "err", err)
			}
		}()
	}
	err := d.node.Run(ctx)
	if d.ln != nil {
		if e := <-errc; err == nil {
			err = e
		}
	}
	d.close()
	return err
}

func (d *daemon) close() {
	if d.sup != nil {
		d.sup.Close()
	}
	if d.db != nil {
		d.db.Close()
	}
}

func (a *app) runCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "Run the daemon (the node, its channels and the local API)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := a.logger()
			cfg, err := loadConfig(a.configPath(), adapterNames(a.home))
			if err != nil {
				return err
			}
			start := time.Now()
			d, err := openDaemon(cmd.Context(), a.home, cfg, log, daemonOptions{API: true})
			if err != nil {
				return err
			}
			log.Info("daemon started", "peer", d.node.ID(), "socket", a.socketPath(), "startup", time.Since(start).Round(time.Millisecond))
			return d.run(cmd.Context())
		},
	}
}
