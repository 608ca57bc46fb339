package main

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/remora-p2p/remora/testenv"
)

func relayID(t *testing.T) string {
	_, pub, _ := crypto.GenerateEd25519Key(rand.Reader)
	id, _ := peer.IDFromPublicKey(pub)
	return id.String()
}

// TestBootstrapCommands walks the maintainers' path: keys, delegation,
// a list built from volunteers and recorded dial outcomes (dead relays
// dropped, healthiest first), signed, verified by remora and by the
// minisign CLI; then each refusal with its message.
func TestBootstrapCommands(t *testing.T) {
	h := newHome(t, "maint")
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	h.ok("bootstrap", "keygen", p("root"))
	h.ok("bootstrap", "keygen", p("ci"))
	h.ok("bootstrap", "delegate", "--root-key", p("root.key"), "--out", p("delegation"), p("ci.pub"))
	good, dead, fresh := relayID(t), relayID(t), relayID(t)
	os.WriteFile(p("volunteers.csv"), fmt.Appendf(nil, "peer,addrs\n%s,/ip4/198.51.100.1/tcp/4001\n%s,/ip4/198.51.100.2/tcp/4001 /ip4/198.51.100.2/udp/4001/quic-v1\n%s,/ip4/198.51.100.3/tcp/4001\n", fresh, good, dead), 0o644)
	os.WriteFile(p("health.csv"), fmt.Appendf(nil, "peer,successes,failures\n%s,40,2\n%s,0,25\n", good, dead), 0o644)
	out := h.ok("bootstrap", "build", "--seq", "7", "--health", p("health.csv"), "--out", p("relays.csv"), p("volunteers.csv"))
	if !strings.Contains(out, "2 relays (1 dropped as dead)") {
		t.Fatalf("build: %s", out)
	}
	csv, _ := os.ReadFile(p("relays.csv"))
	lines := strings.Split(string(csv), "\n")
	if !strings.HasPrefix(lines[2], good) || !strings.HasPrefix(lines[3], fresh) {
		t.Fatalf("order:\n%s\nwant the healthy relay first, the untried one next", csv)
	}
	h.ok("bootstrap", "sign", "--key", p("ci.key"), "--delegation", p("delegation"), "--out", p("relays.bundle"), p("relays.csv"))
	out = h.ok("bootstrap", "verify", "--root", p("root.pub"), p("relays.bundle"))
	if !strings.Contains(out, "ok: seq 7, 2 relays") {
		t.Fatalf("verify: %s", out)
	}
	if out := h.ok("bootstrap", "show", "--root", p("root.pub"), p("relays.bundle")); !strings.Contains(out, good) {
		t.Fatalf("show: %s", out)
	}
	if out := h.ok("bootstrap", "show"); !strings.Contains(out, "seq ") {
		t.Fatalf("show of the built-in list: %s", out)
	}

	// The minisign CLI checks the same files.
	if _, err := exec.LookPath("minisign"); err != nil {
		testenv.Missing(t, "web", "minisign not installed (testenv/svc-web.sh up installs it)")
	} else {
		h.ok("bootstrap", "export", p("relays.bundle"), p("parts"))
		root, _ := os.ReadFile(p("root.pub"))
		rootKey := strings.TrimSpace(string(root)[strings.LastIndex(strings.TrimSpace(string(root)), "\n")+1:])
		if out, err := exec.Command("minisign", "-Vm", p("parts/delegation"), "-P", rootKey).CombinedOutput(); err != nil {
			t.Fatalf("minisign on the delegation: %v\n%s", err, out)
		}
		ci, _ := os.ReadFile(p("ci.pub"))
		ciKey := strings.TrimSpace(string(ci)[strings.LastIndex(strings.TrimSpace(string(ci)), "\n")+1:])
		if out, err := exec.Command("minisign", "-Vm", p("parts/relays.csv"), "-P", ciKey).CombinedOutput(); err != nil {
			t.Fatalf("minisign on the list: %v\n%s", err, out)
		}
	}

	// Refusals, each with a message that says what is wrong.
	bundle, _ := os.ReadFile(p("relays.bundle"))
	os.WriteFile(p("cut.bundle"), bundle[:len(bundle)*2/3], 0o644)
	os.WriteFile(p("tampered.bundle"), []byte(strings.Replace(string(bundle), "198.51.100.2/tcp", "198.51.100.9/tcp", 1)), 0o644)
	h.ok("bootstrap", "keygen", p("other"))
	for _, tt := range []struct{ name, file, want string }{
		{"truncated", "cut.bundle", "truncated"},
		{"bad signature", "tampered.bundle", "signature does not verify"},
		{"another root", "relays.bundle", "another root"},
	} {
		root := p("root.pub")
		if tt.name == "another root" {
			root = p("other.pub")
		}
		if out := h.fails("bootstrap", "verify", "--root", root, p(tt.file)); !strings.Contains(out, tt.want) {
			t.Errorf("%s: %s, want it to say %q", tt.name, out, tt.want)
		}
	}
	if out := h.fails("bootstrap", "verify", "--root", p("root.pub"), "--min-seq", "8", p("relays.bundle")); !strings.Contains(out, "rollback") {
		t.Errorf("rollback: %s", out)
	}
	h.ok("bootstrap", "delegate", "--root-key", p("root.key"), "--valid", "1s", "--out", p("old-delegation"), p("ci.pub"))
	h.ok("bootstrap", "build", "--seq", "8", "--valid", "1s", "--out", p("short.csv"), p("volunteers.csv"))
	h.ok("bootstrap", "sign", "--key", p("ci.key"), "--delegation", p("old-delegation"), "--out", p("old.bundle"), p("relays.csv"))
	h.ok("bootstrap", "sign", "--key", p("ci.key"), "--delegation", p("delegation"), "--out", p("short.bundle"), p("short.csv"))
	testenv.WaitFor(t, "the one-second delegation and list to expire", 10*1e9, func() bool {
		out, _ := h.remora("bootstrap", "verify", "--root", p("root.pub"), p("old.bundle"))
		return strings.Contains(out, "delegation expired")
	})
	if out := h.fails("bootstrap", "verify", "--root", p("root.pub"), p("short.bundle")); !strings.Contains(out, "list expired") {
		t.Errorf("expired list: %s", out)
	}
}
