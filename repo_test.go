package remora_test

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestNoBuildOutputsTracked: no tracked file is a compiled program (ELF,
// Mach-O, PE, a Go archive) or larger than 2 MB. Build outputs never get
// committed; .gitignore keeps the usual ones out, this catches the rest.
func TestNoBuildOutputsTracked(t *testing.T) {
	out, err := exec.Command("git", "ls-files", "-z").Output()
	if err != nil {
		t.Skipf("not a git checkout (git ls-files: %v)", err)
	}
	magics := map[string][]byte{
		"an ELF executable":   []byte("\x7fELF"),
		"a Mach-O executable": {0xcf, 0xfa, 0xed, 0xfe},
		"a PE executable":     []byte("MZ"),
		"a Go archive":        []byte("!<arch>\n"),
	}
	files := 0
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		st, err := os.Stat(name)
		if err != nil || !st.Mode().IsRegular() {
			continue // deleted in the work tree, or a symlink
		}
		files++
		if st.Size() > 2<<20 {
			t.Errorf("%s is tracked and %d bytes: build outputs and large data do not belong in the repository", name, st.Size())
			continue
		}
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		head := make([]byte, 8)
		n, _ := io.ReadFull(f, head)
		f.Close()
		for what, magic := range magics {
			if bytes.HasPrefix(head[:n], magic) {
				t.Errorf("%s is tracked and is %s: remove it with `git rm --cached %s`; build outputs never get committed", name, what, name)
			}
		}
	}
	if files < 10 {
		t.Fatalf("saw %d tracked files: the check saw nothing", files)
	}
}
