package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// BridgeLAN makes one network namespace per name, prefix-NAME, joined by a
// bridge in a namespace of its own (prefix-lan): 192.0.2.(10+i)/24 on each
// one's eth0, multicast routed onto that LAN and no other route, so that
// mDNS never reaches the host's networks. It skips (or, with
// REMORA_REQUIRE_SERVERS=1, fails) where namespaces cannot be made, returns
// the namespaces' names, and deletes them all when the test ends.
func BridgeLAN(t testing.TB, prefix string, names ...string) []string {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "natlab", "not root (network namespaces need root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		Missing(t, "natlab", "ip not installed (testenv/svc-natlab.sh up installs it)")
	}
	lan := prefix + "-lan"
	var nss []string
	for _, n := range names {
		nss = append(nss, prefix+"-"+n)
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
