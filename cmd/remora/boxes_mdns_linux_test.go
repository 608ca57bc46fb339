package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
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
	if os.Geteuid() != 0 {
		testenv.Missing(t, "natlab", "not root (network namespaces need root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		testenv.Missing(t, "natlab", "ip not installed (testenv/svc-natlab.sh up installs it)")
	}
	hs := members(t, 2, nil)
	formOverFolder(t, hs)
	nss := bridgeLAN(t, len(hs))
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

// bridgeLAN makes n network namespaces joined by a bridge (in a namespace
// of its own), 192.0.2.10+i/24 on each one's eth0, and no other route; it
// returns their names and deletes them when the test ends.
func bridgeLAN(t *testing.T, n int) []string {
	var rnd [3]byte
	rand.Read(rnd[:])
	prefix := "rm" + hex.EncodeToString(rnd[:])
	lan := prefix + "-lan"
	var nss []string
	for i := range n {
		nss = append(nss, fmt.Sprintf("%s-%d", prefix, i))
	}
	t.Cleanup(func() {
		for _, ns := range append([]string{lan}, nss...) {
			exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("ip", "netns", "add", lan)
	run("ip", "netns", "exec", lan, "ip", "link", "add", "br0", "type", "bridge")
	run("ip", "netns", "exec", lan, "ip", "link", "set", "br0", "up")
	for i, ns := range nss {
		port := fmt.Sprintf("p%d", i)
		run("ip", "netns", "add", ns)
		run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
		run("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", lan)
		run("ip", "netns", "exec", lan, "ip", "link", "set", port, "master", "br0", "up")
		run("ip", "netns", "exec", ns, "ip", "addr", "add", fmt.Sprintf("192.0.2.%d/24", 10+i), "dev", "eth0")
		run("ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up")
		// multicast stays on this LAN; there is no other route at all
		run("ip", "netns", "exec", ns, "ip", "route", "add", "224.0.0.0/4", "dev", "eth0")
	}
	return nss
}
