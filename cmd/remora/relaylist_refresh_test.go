package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	p2ptest "github.com/libp2p/go-libp2p/core/test"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/remora-p2p/remora/core/relaylist"
	"github.com/remora-p2p/remora/matrix/matrixtest"
	"github.com/remora-p2p/remora/testenv"
)

// TestRelayListRefresh: a newer signed list published in a DNS name's TXT
// records (RFC 2136 + TSIG to Knot DNS, by `remora bootstrap publish-dns`)
// is taken by the member that reads that name, and reaches the member that
// reads neither URL nor DNS through the circle's channel (bob's daemon is
// in a network namespace of its own: no live path, only the folder). An
// older list published afterwards is refused as a rollback, also after a
// restart, and the newer one stays in use.
func TestRelayListRefresh(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real daemons")
	}
	v := testenv.Need(t, "dns", "REMORA_DNS_SERVER", "REMORA_DNS_ZONE", "REMORA_DNS_TSIG_NAME", "REMORA_DNS_TSIG_ALGORITHM", "REMORA_DNS_TSIG_SECRET_FILE")
	name := matrixtest.RandomName("_relays-") + "." + v[1]
	signer := newListSigner(t)
	hs := members(t, 2, func(i int, c *Config) {
		c.RelayList = &RelayListConfig{Enabled: on(), RootKey: signer.root(), After: "1h", Refresh: "2s"}
		if i == 0 {
			c.RelayList.DNS, c.RelayList.DNSServer = name, v[0]
		} else {
			c.Listen = []string{"/ip4/0.0.0.0/tcp/0"}
		}
	})
	alice, bob := hs[0], hs[1]
	bob.netns = true
	shared := t.TempDir()
	for _, h := range hs {
		h.ok("channel", "add", "folder", "--adapter", "dir", "--set", "path="+shared, "--set", "poll_interval=100ms")
		h.start()
	}
	formCircle(t, hs)
	publish := func(seq uint64) {
		t.Helper()
		var relays []relaylist.Relay
		for i := range 20 {
			relays = append(relays, relaylist.Relay{Peer: p2ptest.RandPeerIDFatal(t), Health: 0.9,
				Addrs: []ma.Multiaddr{ma.StringCast("/ip4/198.51.100." + strconv.Itoa(i+1) + "/tcp/4001")}})
		}
		file := filepath.Join(alice.dir, "relays.bundle")
		if err := os.WriteFile(file, signer.sign(seq, relays...), 0o644); err != nil {
			t.Fatal(err)
		}
		out := alice.ok("bootstrap", "publish-dns", file, "--name", name, "--server", v[0],
			"--tsig-name", v[2], "--tsig-algorithm", v[3], "--tsig-secret-file", v[4])
		if !strings.Contains(out, "seq "+strconv.FormatUint(seq, 10)+" in ") {
			t.Fatalf("publish-dns: %s", out)
		}
	}
	detail := func(h *home) string { return boxReport(t, h, "relaylist").Detail }
	publish(7)
	testenv.WaitFor(t, "alice taking list 7 from DNS", 60*time.Second, func() bool {
		return strings.Contains(detail(alice), "list seq 7 from dns "+strings.TrimSuffix(name, "."))
	})
	testenv.WaitFor(t, "bob taking list 7 from alice, over the folder", 120*time.Second, func() bool {
		return strings.Contains(detail(bob), "list seq 7 from member")
	})
	if p, _ := peerOf(bob, alice); live(p) {
		t.Fatalf("bob has a live path to alice (%s): the list did not have to come over the channel", p.Path)
	}

	publish(6)
	rollback := func() bool {
		b := boxReport(t, alice, "relaylist")
		return strings.Contains(b.Error, "rollback refused") && strings.Contains(b.Error, "sequence 6, but 7 was accepted before")
	}
	testenv.WaitFor(t, "alice refusing list 6 from DNS as a rollback", 60*time.Second, rollback)
	alice.stop()
	alice.start()
	testenv.WaitFor(t, "alice refusing list 6 again after a restart", 60*time.Second, rollback)
	if d := detail(alice); !strings.Contains(d, "list seq 7 from store") {
		t.Fatalf("after the restart alice uses %q, want list 7 from the store", d)
	}
}
