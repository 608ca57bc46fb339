package main

import (
	"time"

	"github.com/remora-p2p/remora/core/node"
)

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

const boxesHeader = `# Bootstrap boxes (docs/discovery.md), tried cheapest first; each can be
# turned off, and ` + "`remora doctor`" + ` shows what each found:
#
# [cache]                     the peer cache: members' addresses and health
# enabled = true              kept across restarts
# max_age = "720h"            addresses nobody announced or reached for this long go
#
# [pex]                       peer exchange among connected members
# enabled = true
# interval = "2m"             also on connect and whenever a record changes
#
`

func enabled(b *bool) bool { return b == nil || *b }

// validateBoxes checks the box tables.
func (c *Config) validateBoxes(bad func(field, format string, args ...any) error) error {
	durations := []struct{ field, v string }{}
	if c.Cache != nil {
		durations = append(durations, struct{ field, v string }{"cache.max_age", c.Cache.MaxAge})
	}
	if c.PEX != nil {
		durations = append(durations, struct{ field, v string }{"pex.interval", c.PEX.Interval})
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

// applyBoxes sets the node's box options from the config (validated).
func (c *Config) applyBoxes(o *node.Options) error {
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
	return nil
}
