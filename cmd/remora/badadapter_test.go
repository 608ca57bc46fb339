package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// badAdapter writes an executable that describes itself as adapter name and,
// when started as an adapter, runs body (sh): a stand-in for a third-party
// adapter that misbehaves.
func badAdapter(t *testing.T, name, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	script := `#!/bin/sh
if [ "$1" = describe ]; then
  echo '{"protocol_version":1,"name":"` + name + `","version":"1","defaults":{"max_payload":100,"counting":"bytes","text":false,"board":false,"push":false,"poll_interval":"1s","addressed":false,"delete":"none","idempotency":{"level":"none"}}}'
  exit 0
fi
` + body + "\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestDoctorBadAdapter: an installed adapter that prints a wrong handshake
// line or crashes at start gets a doctor line that names the channel and the
// adapter and says what it did.
func TestDoctorBadAdapter(t *testing.T) {
	tests := []struct{ name, body, want string }{
		{"chatty", "echo 'Starting chatty adapter v1...'; exec sleep 60",
			`adapter chatty: printed "Starting chatty adapter v1..." where its handshake line belongs`},
		{"crashy", "echo 'fatal: libfoo.so.1: cannot open shared object file' >&2; exit 127",
			"adapter crashy: exited before printing its handshake line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHome(t, "alice")
			h.ok("adapter", "install", badAdapter(t, tt.name, tt.body))
			h.ok("channel", "add", "friends", "--adapter", tt.name)
			out := h.fails("doctor")
			line := ""
			for _, l := range strings.Split(out, "\n") {
				if strings.HasPrefix(l, "FAIL channel friends") {
					line = l
				}
			}
			if !strings.Contains(line, tt.want) {
				t.Fatalf("doctor's line for the channel lacks %q:\n%s", tt.want, out)
			}
			if tt.name == "crashy" && !strings.Contains(out, "libfoo.so.1") {
				t.Errorf("doctor does not show the adapter's stderr:\n%s", out)
			}
			t.Logf("%s", line)
		})
	}
}
