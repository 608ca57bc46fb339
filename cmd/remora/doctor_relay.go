package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/remora-p2p/remora/core/api"
)

// doctorRelay asks the relay question once when nobody answered it yet (on
// a terminal) and saves the answer; it returns the consent now in force.
func (a *app) doctorRelay(cmd *cobra.Command, w io.Writer, cfg *Config) string {
	if cfg.Relay != RelayAsk {
		return cfg.Relay
	}
	answer := askRelay(cmd)
	if answer == RelayAsk {
		return answer
	}
	cfg.Relay = answer
	if err := saveConfig(a.configPath(), cfg); err != nil {
		fmt.Fprintf(w, "FAIL %-22s %v\n", "relay", err)
		return RelayAsk
	}
	fmt.Fprintf(w, "     %-22s relay = %q saved; restart the daemon for it to apply\n", "", answer)
	return answer
}

// doctorNAT shows the NAT in front of this device and who relays for whom.
func doctorNAT(w io.Writer, consent string, st api.Status, now time.Time) {
	line := func(what, detail string) { fmt.Fprintf(w, "ok   %-22s %s\n", what, detail) }
	line("NAT", fmt.Sprintf("mapping %s, filtering %s (reachability %s)", orUnknown(st.NATMapping), orUnknown(st.NATFiltering), st.Reachability))
	if b := st.Birthday; b != nil {
		line("birthday probing", fmt.Sprintf("%d attempts from this side, %d made a direct path", b.Attempts, b.Direct))
	}
	names := map[string]string{}
	for _, c := range st.Circles {
		for _, m := range c.Members {
			names[m.PeerID] = m.Name
		}
	}
	who := func(ids []string) string {
		var out []string
		for _, id := range ids {
			if n := names[id]; n != "" {
				out = append(out, n)
			} else {
				out = append(out, "volunteer "+shortPeer(id))
			}
		}
		return strings.Join(out, ", ")
	}
	r := st.Relay
	switch {
	case consent == RelayAsk:
		line("relay", `not relaying: you were not asked yet — set relay = "yes" or "no" in config.toml, or answer when remora doctor asks on a terminal`)
	case consent == RelayNo:
		line("relay", `not relaying for members (relay = "no")`)
	case r == nil || !r.Enabled:
		line("relay", `relay = "yes" is not in force yet: restart the daemon`)
	case r.Offering:
		line("relay", fmt.Sprintf("offering to relay for members (up since %s)", r.UpSince.Format(time.RFC3339)))
	case st.Reachability != "public":
		line("relay", "consented, not offering: members have not confirmed this device publicly reachable")
	default:
		line("relay", fmt.Sprintf("consented, not offering yet: up %s, promotion waits for a longer stretch", now.Sub(r.UpSince).Round(time.Second)))
	}
	if r != nil && len(r.Serving) > 0 {
		line("relays for", who(r.Serving))
	}
	if r != nil && len(r.Using) > 0 {
		line("relayed by", who(r.Using))
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func shortPeer(id string) string {
	if len(id) > 8 {
		return id[len(id)-8:]
	}
	return id
}
