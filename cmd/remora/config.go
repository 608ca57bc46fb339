package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/remora-p2p/remora/sdk"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/spf13/cobra"

	"github.com/remora-p2p/remora/core/lan"
)

// Config is config.toml in the home directory. Secrets never live in it:
// each secret names an environment variable, a file or a command.
type Config struct {
	// Name is this device's display name in circles.
	Name string `toml:"name"`
	// Listen are libp2p multiaddrs to listen on.
	Listen []string `toml:"listen,omitempty"`
	// ListenNewPorts makes a listen address with port 0 take a new port at
	// every start. By default it takes the port of the last run when that
	// is free, so the addresses friends cached stay good (core/listenport).
	ListenNewPorts bool `toml:"listen_new_ports,omitempty"`
	// OldMDNS is the top-level mdns = true|false of earlier versions:
	// true (libp2p's mDNS everywhere) reads as [lan] mdns = "on"; false was
	// the default, so it means nothing now. Dropped when the file is saved.
	OldMDNS *bool `toml:"mdns,omitempty"`
	// Relay is the user's consent to relay for circle members: "yes" (a
	// device that members confirm publicly reachable, up for a while,
	// relays for its circles' members only, with limits), "no", or "ask"
	// (the default: not relaying; `remora init` and `remora doctor` ask
	// once on a terminal and write the answer here).
	Relay string `toml:"relay,omitempty"`
	// OldNoRelay is the no_relay = true|false of earlier versions, when
	// relaying was opt-out: true reads as relay = "no"; false gave no
	// consent, so it reads as "ask". Dropped when the file is saved.
	OldNoRelay *bool `toml:"no_relay,omitempty"`
	// AdapterProcesses is "shared" (default: the built-in adapters run in
	// one process, one Go runtime for them all) or "separate" (one process
	// per adapter kind: a crash of one leaves the others running).
	AdapterProcesses string `toml:"adapter_processes,omitempty"`
	// PresenceInterval is how often presence is published ("5m").
	PresenceInterval string `toml:"presence_interval,omitempty"`
	// Bootstrap boxes (config_boxes.go).
	LAN   *LANConfig   `toml:"lan,omitempty"`
	Cache *CacheConfig `toml:"cache,omitempty"`
	PEX   *PEXConfig   `toml:"pex,omitempty"`
	Web   *WebConfig   `toml:"web,omitempty"`
	DNS   *DNSConfig   `toml:"dns,omitempty"`
	// RelayList is the [relay_list] table.
	RelayList *RelayListConfig `toml:"relay_list,omitempty"`
	// Mailbox and Push are the [mailbox] and [push] tables (config_mailbox.go).
	Mailbox *MailboxConfig `toml:"mailbox,omitempty"`
	Push    *PushConfig    `toml:"push,omitempty"`
	// Channels are the services this device uses as channels.
	Channels []ChannelConfig `toml:"channel"`
}

// ChannelConfig is one [[channel]] table.
type ChannelConfig struct {
	// Name is the local name (letters, digits, '-', '_').
	Name string `toml:"name"`
	// Adapter is the adapter kind: dir, imap, matrix, git, mastodon, or an installed one.
	Adapter string `toml:"adapter"`
	// ID is the circle-wide channel ID, the same for every member (default: name).
	ID string `toml:"id,omitempty"`
	// To are the members' addresses on the service, for addressed channels
	// (mail in direct mode: every member's mail address).
	To []string `toml:"to,omitempty"`
	// Config is the adapter's configuration (see docs/channel-*.md).
	Config map[string]any `toml:"config"`
	// Secrets name where each secret comes from.
	Secrets map[string]SecretRef `toml:"secrets,omitempty"`
}

// SecretRef says where one secret comes from: exactly one of Env, File, Command.
type SecretRef struct {
	Env     string `toml:"env,omitempty"`
	File    string `toml:"file,omitempty"`
	Command string `toml:"command,omitempty"`
}

// ConfigError names the field that is wrong and what to do.
type ConfigError struct {
	Path  string // config file
	Field string // e.g. channel[2].adapter
	Msg   string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("%s: %s: %s", e.Path, e.Field, e.Msg)
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)

// loadConfig reads and validates the config file. A missing file is an
// error that says to run `remora init`.
func loadConfig(path string, adapters []string) (*Config, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no configuration at %s: run `remora init` first", path)
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	var c Config
	dec := toml.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		var sm *toml.StrictMissingError
		if errors.As(err, &sm) && len(sm.Errors) > 0 {
			k := sm.Errors[0].Key()
			row, _ := sm.Errors[0].Position()
			return nil, &ConfigError{Path: path, Field: strings.Join(k, "."), Msg: fmt.Sprintf("unknown field (line %d); see the comments in a fresh `remora init` config", row)}
		}
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			return nil, &ConfigError{Path: path, Field: strings.Join(de.Key(), "."), Msg: fmt.Sprintf("line %d column %d: %s", row, col, de.Error())}
		}
		return nil, &ConfigError{Path: path, Field: "(file)", Msg: err.Error()}
	}
	if err := c.validate(path, adapters); err != nil {
		return nil, err
	}
	if c.OldNoRelay != nil {
		if *c.OldNoRelay && c.Relay == "" {
			c.Relay = RelayNo
		}
		c.OldNoRelay = nil
	}
	if c.Relay == "" {
		c.Relay = RelayAsk
	}
	if c.OldMDNS != nil {
		if *c.OldMDNS && c.LAN == nil {
			c.LAN = &LANConfig{MDNS: string(lan.On)}
		}
		c.OldMDNS = nil
	}
	return &c, nil
}

func (c *Config) validate(path string, adapters []string) error {
	bad := func(field, format string, args ...any) error {
		return &ConfigError{Path: path, Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	if strings.TrimSpace(c.Name) == "" || len(c.Name) > 64 {
		return bad("name", "give your display name (1 to 64 characters)")
	}
	if c.PresenceInterval != "" {
		d, err := time.ParseDuration(c.PresenceInterval)
		if err != nil || d < time.Second {
			return bad("presence_interval", "%q is not a duration of at least 1s (e.g. \"5m\")", c.PresenceInterval)
		}
	}
	switch c.Relay {
	case "", RelayAsk, RelayYes, RelayNo:
	default:
		return bad("relay", "%q is not one of \"yes\", \"no\" or \"ask\" (relay for your circles' members when this device is publicly reachable)", c.Relay)
	}
	switch c.AdapterProcesses {
	case "", "shared", "separate":
	default:
		return bad("adapter_processes", "%q is neither \"shared\" nor \"separate\"", c.AdapterProcesses)
	}
	if err := c.validateBoxes(bad); err != nil {
		return err
	}
	if err := c.validateMailbox(bad); err != nil {
		return err
	}
	seen := map[string]bool{}
	for i, ch := range c.Channels {
		f := fmt.Sprintf("channel[%d]", i+1)
		if !nameRE.MatchString(ch.Name) {
			return bad(f+".name", "%q: use letters, digits, '-' and '_'", ch.Name)
		}
		if seen[ch.Name] {
			return bad(f+".name", "%q is used twice", ch.Name)
		}
		seen[ch.Name] = true
		if !slices.Contains(adapters, ch.Adapter) {
			return bad(f+".adapter", "unknown adapter %q (available: %s)", ch.Adapter, strings.Join(adapters, ", "))
		}
		for k, s := range ch.Secrets {
			n := 0
			for _, v := range []string{s.Env, s.File, s.Command} {
				if v != "" {
					n++
				}
			}
			if n != 1 {
				return bad(f+".secrets."+k, "give exactly one of env, file or command")
			}
		}
	}
	return nil
}

// adapterConfig turns a channel's TOML config into the adapter's JSON.
func (ch ChannelConfig) adapterConfig() (json.RawMessage, error) {
	if ch.Config == nil {
		return json.RawMessage("{}"), nil
	}
	return json.Marshal(ch.Config)
}

// resolveSecrets reads the channel's secrets. Nothing is logged.
func (ch ChannelConfig) resolveSecrets(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	for k, s := range ch.Secrets {
		switch {
		case s.Env != "":
			v, ok := os.LookupEnv(s.Env)
			if !ok {
				return nil, fmt.Errorf("channel %s: secret %s: environment variable %s is not set", ch.Name, k, s.Env)
			}
			out[k] = v
		case s.File != "":
			b, err := os.ReadFile(s.File)
			if err != nil {
				return nil, fmt.Errorf("channel %s: secret %s: %w", ch.Name, k, err)
			}
			out[k] = strings.TrimRight(string(b), "\r\n")
		case s.Command != "":
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			cmd := exec.CommandContext(cctx, "/bin/sh", "-c", s.Command)
			cmd.Stderr = os.Stderr
			b, err := cmd.Output()
			cancel()
			if err != nil {
				return nil, fmt.Errorf("channel %s: secret %s: password command failed: %w", ch.Name, k, err)
			}
			out[k] = strings.TrimRight(string(b), "\r\n")
		}
	}
	if _, ok := out[sdk.SecretMarkKey]; !ok {
		// the same on every member's device: keyed by the circle-wide ID
		id := ch.ID
		if id == "" {
			id = ch.Name
		}
		out[sdk.SecretMarkKey] = sdk.MarkKey(id)
	}
	return out, nil
}

const configHeader = `# remora configuration. Secrets never go in this file: each secret names an
# environment variable (env), a file (file) or a command that prints it
# (command, e.g. "pass show mail/remora").
#
# name      your display name in circles
# listen    libp2p addresses to listen on
# relay     "yes": relay for circle members (members only, with limits) once
#           members confirm this device publicly reachable and it has been
#           up a while; "no"; "ask" (default: not relaying until you answer;
#           remora init and remora doctor ask once on a terminal)
#
` + boxesHeader + `# Each [[channel]] is one service the circle shares (see docs/channel-*.md):
#
# [[channel]]
# name = "mail"                 # local name
# adapter = "imap"              # dir, imap, matrix, git, mastodon
# id = "friends-list"           # the same on every member's device
# [channel.config]
# mode = "list"
# imap = "imap.example.org:993"
# [channel.secrets]
# password = { command = "pass show mail/remora" }

`

// Consent values of relay.
const (
	RelayAsk = "ask"
	RelayYes = "yes"
	RelayNo  = "no"
)

// relayQuestion is what init and doctor ask once.
const relayQuestion = "Relay for your circles' members when this device is publicly reachable (members only, limited)? yes/no"

// askRelay asks the relay question on a terminal; it returns "ask" (no
// answer yet) when stdin is not one or the answer is neither yes nor no.
func askRelay(cmd *cobra.Command) string {
	switch strings.ToLower(prompt(cmd, relayQuestion, RelayAsk)) {
	case "y", "yes":
		return RelayYes
	case "n", "no":
		return RelayNo
	}
	return RelayAsk
}

// saveConfig writes the config with mode 0600.
func saveConfig(path string, c *Config) error {
	b, err := toml.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode config: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append([]byte(configHeader), b...), 0o600); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return os.Rename(tmp, path)
}
