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
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
