package benchdoc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReplace(t *testing.T) {
	tests := []struct {
		name, doc, want, err string
	}{
		{"appended", "# B\n\ntext\n", "# B\n\ntext\n\n<!-- bench:x -->\nnew\n<!-- /bench:x -->\n", ""},
		{"replaced", "a\n<!-- bench:x -->\nold\nold\n<!-- /bench:x -->\nb\n", "a\n<!-- bench:x -->\nnew\n<!-- /bench:x -->\nb\n", ""},
		{"other section kept", "<!-- bench:y -->\ny\n<!-- /bench:y -->\n", "<!-- bench:y -->\ny\n<!-- /bench:y -->\n\n<!-- bench:x -->\nnew\n<!-- /bench:x -->\n", ""},
		{"end marker only", "<!-- /bench:x -->\n", "", "out of order"},
		{"reversed", "<!-- /bench:x -->\n<!-- bench:x -->\n", "", "out of order"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := replace([]byte(tt.doc), "x", "new\n")
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want one saying %q", err, tt.err)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("got %q, %v\nwant %q", got, err, tt.want)
			}
		})
	}
}

// TestWrite: with writing on, a section lands in BENCHMARKS.md and a plot
// in plots/ of the module found above the working directory.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module x\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "BENCHMARKS.md"), []byte("# Benchmarks\n"), 0o644)
	sub := filepath.Join(dir, "pkg")
	os.Mkdir(sub, 0o755)
	t.Chdir(sub)
	t.Setenv(EnvWrite, "1")
	Section(t, "demo", "| a | b |\n|---|---|\n| 1 | 2 |\n")
	Lines(t, "demo-lines.svg", "demo", "x", "y", Series{Name: "s", X: []float64{1, 2, 3}, Y: []float64{1, 4, 9}})
	Bars(t, "demo-bars.svg", "demo", "y", []string{"p", "q"}, Series{Name: "s", Y: []float64{1, 2}}, Series{Name: "t", Y: []float64{3, 4}})
	md, _ := os.ReadFile(filepath.Join(dir, "BENCHMARKS.md"))
	if !strings.Contains(string(md), "<!-- bench:demo -->\n| a | b |") {
		t.Fatalf("BENCHMARKS.md:\n%s", md)
	}
	for _, f := range []string{"demo-lines.svg", "demo-bars.svg"} {
		b, err := os.ReadFile(filepath.Join(dir, "plots", f))
		if err != nil || !strings.Contains(string(b), "<svg") {
			t.Fatalf("%s: %v, %.80q", f, err, b)
		}
	}
}
