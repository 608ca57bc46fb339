package testenv

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPrivate: a private instance of each service answers on its own
// ports, is gone after Stop, and answers again after Start with its data.
func TestPrivate(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers")
	}
	for _, tt := range []struct{ service, addrKey, data string }{
		{"git", "REMORA_GIT_DAEMON_URL", "git/repos"},
		{"mail", "REMORA_MAIL_IMAP", "mail/maildirs"},
		{"matrix", "REMORA_MATRIX_URL", "matrix/main"},
	} {
		t.Run(tt.service, func(t *testing.T) {
			p := StartPrivate(t, tt.service)
			addr := hostPort(p.Get(tt.addrKey))
			for _, shared := range []string{"127.0.0.1:19418", "127.0.0.1:10143", "127.0.0.1:18008"} {
				if addr == shared {
					t.Fatalf("private %s listens on the shared instance's %s", tt.service, addr)
				}
			}
			if !answers(addr) {
				t.Fatalf("private %s does not answer on %s", tt.service, addr)
			}
			// a file in the data folder stands for the data: a restart
			// that made a fresh instance would lose it
			marker := filepath.Join(p.Dir, tt.data, "kept-across-restarts")
			if err := os.WriteFile(marker, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := p.Stop(); err != nil {
				t.Fatal(err)
			}
			if answers(addr) {
				t.Fatalf("private %s still answers on %s after Stop", tt.service, addr)
			}
			if err := p.Start(); err != nil {
				t.Fatal(err)
			}
			WaitFor(t, tt.service+" answering again", 30*time.Second, func() bool { return answers(addr) })
			if _, err := os.Stat(marker); err != nil {
				t.Errorf("private %s lost its data across Stop and Start: %v", tt.service, err)
			}
		})
	}
}

func hostPort(url string) string {
	if _, hp, ok := strings.Cut(url, "://"); ok {
		return hp
	}
	return url
}

func answers(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
