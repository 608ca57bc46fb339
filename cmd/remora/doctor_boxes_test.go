package main

import (
	"strings"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/api"
)

// TestPrintBoxes: doctor's box table shows every box's state, its detail
// line (mdns: where it announces and why not elsewhere; relaylist: the list
// in use) and, for a failing or off box, what to do.
func TestPrintBoxes(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	boxes := []api.Box{
		{Name: "mdns", Configured: true, State: "ok", LastAttempt: now.Add(-time.Minute), LastSuccess: now.Add(-time.Minute), Found: 1,
			Detail: "announcing on wlan0 (192.168.1.23 is in 192.168.0.0/16, a private network); not on eth0 (198.51.100.7 is in 198.51.100.0/24, marked public)"},
		{Name: "cache", Configured: false, State: "off", Fix: "set [cache] enabled = true in config.toml"},
		{Name: "relaylist", Configured: true, State: "failing", LastAttempt: now.Add(-2 * time.Second),
			Error:  "dns _relays.example.org: relay list: older than a list accepted before (rollback refused): sequence 6, but 7 was accepted before",
			Fix:    "check [relay_list] dns and dns_server",
			Detail: "list seq 7 from store, 20 relays, expires 2026-12-30"},
	}
	var b strings.Builder
	printBoxes(&b, boxes, now)
	out := b.String()
	for _, want := range []string{
		"mdns       ok", "1m0s ago",
		"mdns                   announcing on wlan0", "not on eth0 (198.51.100.7 is in 198.51.100.0/24, marked public)",
		"cache      off",
		"relaylist  failing",
		"relaylist              list seq 7 from store",
		"relaylist error", "rollback refused",
		"relaylist fix", "check [relay_list] dns",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor's box table lacks %q:\n%s", want, out)
		}
	}
}
