package main

import (
	"context"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestListenPortsKept: a restarted daemon listens on the ports of its last
// run, so the addresses its friends cached still reach it; a port taken
// meanwhile is replaced by a new one (and doctor says which), and
// listen_new_ports = true takes new ports at every start.
func TestListenPortsKept(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a daemon")
	}
	h := newHome(t, "alice")
	h.ok("channel", "add", "folder", "--adapter", "dir", "--set", "path="+t.TempDir())
	ports := func() (tcp, udp string, doctor string) {
		t.Helper()
		h.start()
		defer h.stop()
		st, err := h.client().Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range st.ListenAddrs {
			if m := regexp.MustCompile(`^/ip4/127\.0\.0\.1/tcp/(\d+) `).FindStringSubmatch(a); m != nil {
				tcp = m[1]
			}
			if m := regexp.MustCompile(`^/ip4/127\.0\.0\.1/udp/(\d+)/quic-v1 `).FindStringSubmatch(a); m != nil {
				udp = m[1]
			}
		}
		if tcp == "" || udp == "" {
			t.Fatalf("no loopback TCP and QUIC address in %q", st.ListenAddrs)
		}
		return tcp, udp, h.ok("doctor")
	}
	has := func(out, want string) {
		t.Helper()
		if !strings.Contains(out, want) {
			t.Fatalf("doctor lacks %q:\n%s", want, out)
		}
	}

	tcp1, udp1, doc := ports()
	has(doc, "listen ports           chosen now; the next start keeps them")
	tcp2, udp2, doc := ports()
	if tcp2 != tcp1 || udp2 != udp1 {
		t.Fatalf("restart moved the ports: tcp %s → %s, udp %s → %s", tcp1, tcp2, udp1, udp2)
	}
	has(doc, "listen ports           kept from the last run")

	// Someone else takes the TCP port while the daemon is down.
	l, err := net.Listen("tcp4", "0.0.0.0:"+tcp1)
	if err != nil {
		t.Fatalf("taking the daemon's old port: %v", err)
	}
	tcp3, udp3, doc := ports()
	l.Close()
	if tcp3 == tcp1 || udp3 != udp1 {
		t.Fatalf("with TCP %s taken: tcp %s, udp %s (want a new TCP port, UDP kept at %s)", tcp1, tcp3, udp3, udp1)
	}
	has(doc, "kept from the last run (the others were taken")

	path := filepath.Join(h.dir, "config.toml")
	cfg, err := loadConfig(path, builtinNames())
	if err != nil {
		t.Fatal(err)
	}
	cfg.ListenNewPorts = true
	if err := saveConfig(path, cfg); err != nil {
		t.Fatal(err)
	}
	tcp4, udp4, doc := ports()
	if tcp4 == tcp3 && udp4 == udp3 {
		t.Fatalf("listen_new_ports = true kept tcp %s and udp %s", tcp4, udp4)
	}
	has(doc, "new at every start (listen_new_ports = true)")
}
