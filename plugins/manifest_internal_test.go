package plugins

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzManifest: whatever manifest.json holds, resolving a name either
// fails with an error or yields a pinned executable inside the plugins
// directory; never a path elsewhere, never an unpinned one.
func FuzzManifest(f *testing.F) {
	good := `{"adapters":{"x":{"name":"x","version":"1","file":"remora-adapter-x","sha256":"` + strings.Repeat("ab", 32) + `"}}}`
	f.Add(good, "x")
	f.Add(`{"adapters":{"x":{"name":"x","file":"../../bin/sh","sha256":"`+strings.Repeat("ab", 32)+`"}}}`, "x")
	f.Add(`{"adapters":{"x":{"name":"x","file":"/bin/sh","sha256":""}}}`, "x")
	f.Add(`{"adapters":null}`, "x")
	f.Add(`not json`, "x")
	f.Fuzz(func(t *testing.T, manifest, name string) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, manifestFile), []byte(manifest), 0o600); err != nil {
			t.Fatal(err)
		}
		s := New(Options{Dir: dir})
		_ = s.Adapters()
		sp, err := s.resolve(name)
		if err != nil {
			return
		}
		if len(sp.checksum) != 32 {
			t.Fatalf("resolved %q without a SHA-256 pin", name)
		}
		cmd := sp.command()
		if filepath.Dir(cmd.Path) != dir {
			t.Fatalf("resolved %q to %s, outside %s", name, cmd.Path, dir)
		}
	})
}
