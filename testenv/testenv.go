// Package testenv tells integration tests where the real servers started by
// `make testenv` are, and applies the project's skip policy: a test whose
// server is missing skips with a message saying how to start it, unless
// REMORA_REQUIRE_SERVERS=1 (set by `make test` and CI), which makes that a
// failure so CI can never pass on skipped integration tests.
//
// Each service script (testenv/svc-NAME.sh up DIR) appends KEY=VALUE lines to
// DIR/env; DIR is $REMORA_TESTENV (default /tmp/remora-testenv). A variable
// set in the process environment wins over the file.
package testenv

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	manet "github.com/multiformats/go-multiaddr/net"
)

// Dir is the folder the service scripts write to.
func Dir() string {
	if d := os.Getenv("REMORA_TESTENV"); d != "" {
		return d
	}
	return "/tmp/remora-testenv"
}

// Lookup returns the value of key from the environment or Dir()/env.
func Lookup(key string) (string, bool) {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v, true
	}
	f, err := os.Open(filepath.Join(Dir(), "env"))
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	val, found := "", false
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if ok && k == key {
			val, found = v, true // the last line wins, as in a shell
		}
	}
	return val, found
}

// Required reports whether missing servers must fail tests.
func Required() bool { return os.Getenv("REMORA_REQUIRE_SERVERS") == "1" }

// Need returns the values of keys, or skips t (fails it under
// REMORA_REQUIRE_SERVERS=1) naming what is missing and how to start it.
func Need(t testing.TB, service string, keys ...string) []string {
	t.Helper()
	vals := make([]string, len(keys))
	var missing []string
	for i, k := range keys {
		v, ok := Lookup(k)
		if !ok {
			missing = append(missing, k)
		}
		vals[i] = v
	}
	if len(missing) > 0 {
		Missing(t, service, "%s not set (in the environment or %s)", strings.Join(missing, ", "), filepath.Join(Dir(), "env"))
	}
	return vals
}

// Missing skips t, or fails it under REMORA_REQUIRE_SERVERS=1, because
// service is unavailable.
func Missing(t testing.TB, service, format string, args ...any) {
	t.Helper()
	args = append([]any{service}, args...)
	if Required() {
		t.Fatalf("%s server required but missing: "+format+"; run `make testenv`", args...)
	}
	if testing.Short() {
		t.Skipf("%s: skipped in -short mode", service)
	}
	t.Skipf("%s server missing: "+format+"; run `make testenv` to start it", args...)
}

// WaitFor polls cond until it holds, or fails the test after d naming what
// it waited for. Integration tests wait on real servers and processes, whose
// timing no test controls.
func WaitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", d, what)
}

// NeedNATLab skips (or, with REMORA_REQUIRE_SERVERS=1, fails) a namespace
// NAT lab test that cannot run here: it needs root and ip, iptables and
// conntrack (testenv/svc-natlab.sh installs them), and it is skipped in
// -short mode.
func NeedNATLab(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "natlab", "not root (network namespaces and iptables need root)")
	}
	for _, tool := range []string{"ip", "iptables", "conntrack"} {
		if _, err := exec.LookPath(tool); err != nil {
			Missing(t, "natlab", "%s not installed (testenv/svc-natlab.sh up installs it)", tool)
		}
	}
	if testing.Short() {
		t.Skip("natlab: skipped in -short mode")
	}
}

// UnlockTestNet3 lets libp2p treat 203.0.113.0/24 (TEST-NET-3), the NAT
// labs' "internet", as public. Only lab peers re-executed inside their
// network namespaces call it.
func UnlockTestNet3() {
	_, testNet3, _ := net.ParseCIDR("203.0.113.0/24")
	manet.Unroutable4 = slices.DeleteFunc(slices.Clone(manet.Unroutable4), func(n *net.IPNet) bool {
		return n.String() == testNet3.String()
	})
}
