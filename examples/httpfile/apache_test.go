package main

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/channeltest"
	"github.com/remora-p2p/remora/testenv"
)

// newApache is a fresh collection on Apache's mod_dav (testenv/svc-web.sh),
// written with basic auth.
func newApache(t *testing.T) channeltest.Harness {
	v := testenv.Need(t, "web", "REMORA_WEB_DAV_URL", "REMORA_WEB_DAV_USER", "REMORA_WEB_DAV_PASSWORD_FILE")
	pass, err := os.ReadFile(v[2])
	if err != nil {
		t.Fatal(err)
	}
	return newCollection(t, v[0], v[1], strings.TrimSpace(string(pass)))
}

// TestConformanceApache runs the kit against Apache httpd's mod_dav, a
// server people run, with the password as a secret.
func TestConformanceApache(t *testing.T) {
	channeltest.Run(t, adapter{}, newApache)
}

// TestWrongPassword: Apache's 401 is CodeAuthFailed at Configure.
func TestWrongPassword(t *testing.T) {
	bad := *newApache(t).(*harness)
	bad.pass = "not-the-password"
	_, err := bad.Open(context.Background(), t, adapter{}, 0)
	if sdk.CodeOf(err) != sdk.CodeAuthFailed {
		t.Fatalf("wrong password: got %v, want auth failed", err)
	}
}
