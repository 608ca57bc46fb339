package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/api"
)

// TestDoctorRelay: a fresh home relays for nobody until the user says yes
// (init on a non-terminal leaves relay = "ask"); doctor says so and how to
// answer; with relay = "yes" the daemon runs the relay for members and
// doctor shows the NAT and the consent in force.
func TestDoctorRelay(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a daemon")
	}
	h := newHome(t, "alice")
	path := filepath.Join(h.dir, "config.toml")
	if _, err := loadConfig(path, builtinNames()); err != nil {
		t.Fatal(err)
	}
	if raw, _ := os.ReadFile(path); !strings.Contains(string(raw), "relay = 'ask'") {
		t.Fatalf("init without a terminal wrote no relay = 'ask':\n%s", raw)
	}
	h.ok("channel", "add", "folder", "--adapter", "dir", "--set", "path="+t.TempDir())
	h.start()
	st, err := h.client().Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Relay == nil || st.Relay.Enabled {
		t.Fatalf("relay status %+v: want present and not enabled without consent", st.Relay)
	}
	out := h.ok("doctor")
	for _, want := range []string{"NAT ", "mapping ", "filtering ", "not relaying: you were not asked yet", `relay = "yes" or "no"`} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor without consent lacks %q:\n%s", want, out)
		}
	}
	h.stop()

	cfg, err := loadConfig(path, builtinNames()) // with the channel
	if err != nil {
		t.Fatal(err)
	}
	cfg.Relay = RelayYes
	if err := saveConfig(path, cfg); err != nil {
		t.Fatal(err)
	}
	h.start()
	if st, err = h.client().Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st.Relay == nil || !st.Relay.Enabled || st.Relay.UpSince.IsZero() {
		t.Fatalf("relay status %+v: want enabled with an uptime stretch", st.Relay)
	}
	if out := h.ok("doctor"); !strings.Contains(out, "consented, not offering") {
		t.Errorf("doctor with consent on a host nobody confirmed reachable:\n%s", out)
	}
}

// doctor shows what birthday-paradox probing did, and nothing when it never ran.
func TestDoctorBirthday(t *testing.T) {
	for _, tt := range []struct {
		name string
		b    *api.Birthday
		want string
	}{
		{"ran", &api.Birthday{Attempts: 3, Direct: 1}, "birthday probing       3 attempts from this side, 1 made a direct path"},
		{"never", nil, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf strings.Builder
			doctorNAT(&buf, "ask", api.Status{Birthday: tt.b}, time.Now())
			out := buf.String()
			if got := strings.Contains(out, "birthday probing"); got != (tt.want != "") || !strings.Contains(out, tt.want) {
				t.Fatalf("doctor output:\n%s\nwant %q", out, tt.want)
			}
		})
	}
}
