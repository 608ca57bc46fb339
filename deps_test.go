// Package remora_test holds repository-wide checks.
package remora_test

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/remora-p2p/remora"

// adapterDirs are the adapter packages: they may import only sdk (and their
// own subpackages) from this module.
var adapterDirs = []string{"dir", "imap", "matrix", "git", "mastodon"}

// TestDependencyDirection enforces DESIGN.md: adapters → sdk only; sdk never
// imports core; core never imports plugins or adapters.
func TestDependencyDirection(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	packages := 0
	for dec.More() {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("decode go list: %v", err)
		}
		packages++
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			irel := strings.TrimPrefix(strings.TrimPrefix(imp, module), "/")
			if why := forbidden(rel, irel); why != "" {
				t.Errorf("%s imports %s: %s", p.ImportPath, imp, why)
			}
		}
	}
	if packages < 2 {
		t.Fatalf("go list saw %d packages: the check saw nothing", packages)
	}
}

func under(pkg, dir string) bool { return pkg == dir || strings.HasPrefix(pkg, dir+"/") }

// forbidden says why package pkg may not import imp ("" if it may).
func forbidden(pkg, imp string) string {
	for _, a := range adapterDirs {
		if under(pkg, a) && !under(imp, "sdk") && !under(imp, a) {
			return "adapters may import only sdk"
		}
	}
	switch {
	case under(pkg, "sdk") && !under(imp, "sdk"):
		return "sdk imports nothing else from this module"
	case under(pkg, "core") && under(imp, "plugins"):
		return "core never imports plugins"
	}
	if under(pkg, "core") {
		for _, a := range adapterDirs {
			if under(imp, a) {
				return "core never imports an adapter"
			}
		}
	}
	return ""
}

func TestForbidden(t *testing.T) {
	tests := []struct {
		pkg, imp string
		ok       bool
	}{
		{"dir", "sdk", true},
		{"git", "sdk/channeltest", true},
		{"imap", "core/envelope", false},
		{"matrix", "plugins", false},
		{"sdk", "core/store", false},
		{"sdk/channeltest", "sdk", true},
		{"core/node", "plugins", false},
		{"core/node", "git", false},
		{"core/node", "core/store", true},
		{"plugins", "core/store", true},
		{"cmd/remora", "imap", true},
	}
	for _, tt := range tests {
		t.Run(tt.pkg+"->"+tt.imp, func(t *testing.T) {
			if got := forbidden(tt.pkg, tt.imp) == ""; got != tt.ok {
				t.Errorf("forbidden(%q, %q) allowed=%v, want %v", tt.pkg, tt.imp, got, tt.ok)
			}
		})
	}
}
