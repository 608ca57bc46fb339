package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/remora-p2p/remora/testenv"
)

// testMDNSAlone: two daemons on one LAN — a bridge in network namespaces
// this test makes (documentation addresses, no route out), so that mDNS
// multicast never reaches the host's networks — with every other box off.
// The LAN is marked private in their config ([lan] private), as a user
// whose home network is not an RFC 1918 one would; they find each other
// by their sealed announcements alone, connect and talk.
func testMDNSAlone(t *testing.T) {
	var rnd [3]byte
	rand.Read(rnd[:])
	nss := testenv.BridgeLAN(t, "rm"+hex.EncodeToString(rnd[:]), "0", "1")
	hs := members(t, 2, nil)
	formOverFolder(t, hs)
	for i, h := range hs {
		h.inNetns = nss[i]
		editConfig(t, h, func(c *Config) {
			c.Listen = []string{fmt.Sprintf("/ip4/192.0.2.%d/tcp/0", 10+i), fmt.Sprintf("/ip4/192.0.2.%d/udp/0/quic-v1", 10+i)}
			c.LAN = &LANConfig{MDNS: "auto", Private: []string{"192.0.2.0/24"}}
		})
	}
	start := time.Now()
	for _, h := range hs {
		h.start()
	}
	took := connectAndTalk(t, "mdns", start, hs[0], hs[1])
	t.Logf("box mdns: first member connected %v after start", took.Round(time.Millisecond))
	for _, h := range hs {
		checkOnlyBox(t, h, "mdns")
		if d := boxReport(t, h, "mdns").Detail; !strings.Contains(d, "announcing on eth0 (192.0.2.") || !strings.Contains(d, "marked private") {
			t.Errorf("%s: mdns detail %q, want it announcing on eth0, marked private", h.name, d)
		}
	}
}
