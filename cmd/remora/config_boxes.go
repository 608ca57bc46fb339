package main

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"aead.dev/minisign"

	"github.com/remora-p2p/remora/core/dnsbox"
	"github.com/remora-p2p/remora/core/lan"
	"github.com/remora-p2p/remora/core/node"
	"github.com/remora-p2p/remora/core/webbox"
)

// LANConfig is the [lan] table: the mDNS box.
type LANConfig struct {
	// MDNS is auto (the default: private networks only), on (every network
	// not marked public) or off.
	MDNS string `toml:"mdns,omitempty"`
	// Public are networks (CIDR) the user marks public: never announced
	// on. Private are networks to trust besides RFC 1918 ones.
	Public  []string `toml:"public,omitempty"`
	Private []string `toml:"private,omitempty"`
}

func (l *LANConfig) policy() (*lan.Policy, error) {
	if l == nil {
		return &lan.Policy{Mode: lan.Auto}, nil
	}
	mode, err := lan.ParseMode(l.MDNS)
	if err != nil {
		return nil, err
	}
	p := &lan.Policy{Mode: mode}
	for _, list := range []struct {
		name string
		in   []string
		out  *[]netip.Prefix
	}{{"public", l.Public, &p.Public}, {"private", l.Private, &p.Private}} {
		for _, s := range list.in {
			pr, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("%s: %q is not a network (e.g. \"192.168.1.0/24\"): %w", list.name, s, err)
			}
			*list.out = append(*list.out, pr.Masked())
		}
	}
	return p, nil
}

// CacheConfig is the [cache] table: the peer cache box.
type CacheConfig struct {
	// Enabled keeps members' addresses and their health across restarts
	// (default true).
	Enabled *bool `toml:"enabled,omitempty"`
	// MaxAge prunes addresses no box announced and no dial reached for
	// this long ("720h", the default).
	MaxAge string `toml:"max_age,omitempty"`
}

// PEXConfig is the [pex] table: peer exchange among connected members.
type PEXConfig struct {
	// Enabled exchanges members' signed presence records over live
	// connections (default true).
	Enabled *bool `toml:"enabled,omitempty"`
	// Interval is the periodic exchange ("2m", the default).
	Interval string `toml:"interval,omitempty"`
}

// WebConfig is the [web] table: the static web file box.
type WebConfig struct {
	// URL of the board file (read by everyone; written per Publish).
	URL string `toml:"url"`
	// Publish is put (HTTP PUT / WebDAV), command, dropbox (the PHP
	// drop-box script) or empty (read only).
	Publish string `toml:"publish,omitempty"`
	// Command publishes the file (publish = "command"); its path is in
	// $REMORA_BOARD_FILE.
	Command string `toml:"command,omitempty"`
	// Username for basic auth (publish = "put").
	Username string `toml:"username,omitempty"`
	// Secrets: password (put), token (dropbox).
	Secrets map[string]SecretRef `toml:"secrets,omitempty"`
}

// DNSConfig is the [dns] table: the DNS TXT box.
type DNSConfig struct {
	// Name whose TXT records hold the entries ("_remora.example.org").
	Name string `toml:"name"`
	// Server to read from ("host:port"; default: the system resolver).
	Server string `toml:"server,omitempty"`
	// UpdateServer is the zone's primary for RFC 2136 updates (empty:
	// read only).
	UpdateServer string `toml:"update_server,omitempty"`
	// Zone to update (default: found by SOA lookup).
	Zone          string `toml:"zone,omitempty"`
	TSIGName      string `toml:"tsig_name,omitempty"`
	TSIGAlgorithm string `toml:"tsig_algorithm,omitempty"`
	// Secrets: tsig_secret (base64).
	Secrets map[string]SecretRef `toml:"secrets,omitempty"`
}

// RelayListConfig is the [relay_list] table: the last box, the signed list
// of volunteer relays.
type RelayListConfig struct {
	// Enabled uses the list (default true): built in, stored, or fetched.
	Enabled *bool `toml:"enabled,omitempty"`
	// URL is fetched for a newer signed list every 6 h.
	URL string `toml:"url,omitempty"`
	// RootKey replaces the embedded root key (a private deployment's own
	// list); a minisign public key ("RW...").
	RootKey string `toml:"root_key,omitempty"`
	// After is how long the other boxes get before volunteer relays are
	// used ("20s").
	After string `toml:"after,omitempty"`
	// MaxRelays is how many volunteer relays are used at once (3).
	MaxRelays int `toml:"max_relays,omitempty"`
	// DNS is a name whose TXT records carry a signed list in chunks
	// (remora bootstrap publish-dns), read every 6 h; DNSServer is the
	// server to ask ("host:port", default the system resolver).
	DNS       string `toml:"dns,omitempty"`
	DNSServer string `toml:"dns_server,omitempty"`
	// Refresh is how often url and dns are read ("6h").
	Refresh string `toml:"refresh,omitempty"`
}

// dnsBoard is the relay list's DNS name as a read-only board.
func (r *RelayListConfig) dnsBoard() (*dnsbox.Box, error) {
	return dnsbox.New(dnsbox.Options{Name: r.DNS, Server: r.DNSServer})
}

const boxesHeader = `# Bootstrap boxes (docs/discovery.md), tried cheapest first; each can be
# turned off, and ` + "`remora doctor`" + ` shows what each found:
#
# [lan]                       mDNS: members on the same LAN find each other
# mdns = "auto"               auto: on private networks only (10/8, 172.16/12,
#                             192.168/16 and those under private); on: every
#                             network not under public; off
# public = ["10.8.0.0/16"]    networks you mark public (a café's, a hotel's)
# private = ["fd12:3456::/48"]   networks you trust besides RFC 1918 ones
#                             What is announced changes with every network and
#                             hour and opens only for your circles' members.
#
# [cache]                     the peer cache: members' addresses and health
# enabled = true              kept across restarts
# max_age = "720h"            addresses nobody announced or reached for this long go
#
# [pex]                       peer exchange among connected members
# enabled = true
# interval = "2m"             also on connect and whenever a record changes
#
# [web]                       a static web file the circle shares (sealed entries only)
# url = "https://example.org/remora-board.txt"
# publish = "put"             put (HTTP PUT/WebDAV), command, dropbox (the PHP
#                             script core/webbox/php/remora-board.php) or "" (read only)
# command = "cp $REMORA_BOARD_FILE ~/pages/board.txt && git -C ~/pages commit -qam board && git -C ~/pages push -q"
# username = "me"             basic auth for put
# [web.secrets]
# password = { env = "REMORA_WEB_PASSWORD" }    (put) or token = ... (dropbox)
#
# [dns]                       TXT records of a name the circle controls
# name = "_remora.example.org"
# server = "ns1.example.org:53"          read from (default: the system resolver)
# update_server = "ns1.example.org:53"   publish by RFC 2136 + TSIG ("" reads only)
# tsig_name = "remora."
# tsig_algorithm = "hmac-sha256"
# [dns.secrets]
# tsig_secret = { file = "~/.config/remora/tsig.key" }
#
# [relay_list]                last resort: the signed list of volunteer relays,
# enabled = true              used only to reach members (` + "`remora bootstrap`" + `)
# url = "https://example.org/relays.bundle"   fetch newer lists from here
# dns = "_relays.example.org" or read them from this name's TXT records
# dns_server = "ns1.example.org:53"           (default: the system resolver)
# refresh = "6h"              how often url and dns are read
#                             Members share a newer list they took with their
#                             circles too, over live paths and channels.
# root_key = "RW..."          trust another root than the built-in one
# after = "20s"               give the other boxes this long first
# max_relays = 3
#
`

func enabled(b *bool) bool { return b == nil || *b }

// validateBoxes checks the box tables.
func (c *Config) validateBoxes(bad func(field, format string, args ...any) error) error {
	if _, err := c.LAN.policy(); err != nil {
		return bad("lan", "%v", err)
	}
	durations := []struct{ field, v string }{}
	if c.Cache != nil {
		durations = append(durations, struct{ field, v string }{"cache.max_age", c.Cache.MaxAge})
	}
	if c.PEX != nil {
		durations = append(durations, struct{ field, v string }{"pex.interval", c.PEX.Interval})
	}
	if c.RelayList != nil {
		durations = append(durations, struct{ field, v string }{"relay_list.after", c.RelayList.After},
			struct{ field, v string }{"relay_list.refresh", c.RelayList.Refresh})
		if c.RelayList.RootKey != "" {
			var k minisign.PublicKey
			if err := k.UnmarshalText([]byte(c.RelayList.RootKey)); err != nil {
				return bad("relay_list.root_key", "not a minisign public key: %v", err)
			}
		}
		if c.RelayList.MaxRelays < 0 {
			return bad("relay_list.max_relays", "must not be negative")
		}
		if c.RelayList.DNS != "" {
			if _, err := c.RelayList.dnsBoard(); err != nil {
				return bad("relay_list.dns", "%v", err)
			}
		}
	}
	if c.Web != nil {
		if _, err := webbox.New(c.Web.options(nil)); err != nil {
			return bad("web", "%v", err)
		}
		if err := checkSecrets(bad, "web", c.Web.Secrets); err != nil {
			return err
		}
	}
	if c.DNS != nil {
		o := c.DNS.options(map[string]string{"tsig_secret": "AAAA"})
		if _, err := dnsbox.New(o); err != nil {
			return bad("dns", "%v", err)
		}
		if err := checkSecrets(bad, "dns", c.DNS.Secrets); err != nil {
			return err
		}
	}
	for _, d := range durations {
		if d.v == "" {
			continue
		}
		if v, err := time.ParseDuration(d.v); err != nil || v < time.Second {
			return bad(d.field, "%q is not a duration of at least 1s (e.g. \"10m\")", d.v)
		}
	}
	return nil
}

func checkSecrets(bad func(field, format string, args ...any) error, table string, secrets map[string]SecretRef) error {
	for k, s := range secrets {
		n := 0
		for _, v := range []string{s.Env, s.File, s.Command} {
			if v != "" {
				n++
			}
		}
		if n != 1 {
			return bad(table+".secrets."+k, "give exactly one of env, file or command")
		}
	}
	return nil
}

func (w *WebConfig) options(secrets map[string]string) webbox.Options {
	return webbox.Options{URL: w.URL, Publish: w.Publish, Command: w.Command, Username: w.Username,
		Password: secrets["password"], Token: secrets["token"]}
}

func (d *DNSConfig) options(secrets map[string]string) dnsbox.Options {
	server := d.Server
	if server == "" && d.UpdateServer != "" {
		server = d.UpdateServer
	}
	return dnsbox.Options{Name: d.Name, Server: server, UpdateServer: d.UpdateServer, Zone: d.Zone,
		TSIGName: d.TSIGName, TSIGAlgorithm: d.TSIGAlgorithm, TSIGSecret: secrets["tsig_secret"]}
}

// applyBoxes sets the node's box options from the config (validated).
func (c *Config) applyBoxes(ctx context.Context, o *node.Options) error {
	p, err := c.LAN.policy()
	if err != nil {
		return fmt.Errorf("[lan]: %w", err)
	}
	o.LAN = p
	if c.Cache != nil {
		o.Boxes.NoCache = !enabled(c.Cache.Enabled)
		if c.Cache.MaxAge != "" {
			o.Boxes.CacheMaxAge, _ = time.ParseDuration(c.Cache.MaxAge)
		}
	}
	if c.PEX != nil {
		o.Boxes.NoPEX = !enabled(c.PEX.Enabled)
		if c.PEX.Interval != "" {
			o.Boxes.PEXInterval, _ = time.ParseDuration(c.PEX.Interval)
		}
	}
	if c.RelayList != nil {
		r := &o.Boxes.RelayList
		r.Off = !enabled(c.RelayList.Enabled)
		r.URL, r.MaxRelays = c.RelayList.URL, c.RelayList.MaxRelays
		if c.RelayList.After != "" {
			r.After, _ = time.ParseDuration(c.RelayList.After)
		}
		if c.RelayList.Refresh != "" {
			r.Refresh, _ = time.ParseDuration(c.RelayList.Refresh)
		}
		if c.RelayList.RootKey != "" {
			var k minisign.PublicKey
			if err := k.UnmarshalText([]byte(c.RelayList.RootKey)); err != nil {
				return fmt.Errorf("[relay_list] root_key: %w", err)
			}
			r.Roots = []minisign.PublicKey{k}
		}
		if c.RelayList.DNS != "" {
			b, err := c.RelayList.dnsBoard()
			if err != nil {
				return fmt.Errorf("[relay_list] dns: %w", err)
			}
			r.DNS = b
		}
	}
	if c.Web != nil {
		secrets, err := ChannelConfig{Name: "web", Secrets: c.Web.Secrets}.resolveSecrets(ctx)
		if err != nil {
			return err
		}
		b, err := webbox.New(c.Web.options(secrets))
		if err != nil {
			return fmt.Errorf("[web]: %w", err)
		}
		o.Boxes.Boards = append(o.Boxes.Boards, b)
	}
	if c.DNS != nil {
		secrets, err := ChannelConfig{Name: "dns", Secrets: c.DNS.Secrets}.resolveSecrets(ctx)
		if err != nil {
			return err
		}
		b, err := dnsbox.New(c.DNS.options(secrets))
		if err != nil {
			return fmt.Errorf("[dns]: %w", err)
		}
		o.Boxes.Boards = append(o.Boxes.Boards, b)
	}
	return nil
}
