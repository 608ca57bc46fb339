package remora_test

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// docFiles are the documents the checks read: README.md and every docs/*.md.
func docFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "README.md")
	if len(files) < 2 {
		t.Fatalf("found %d documents: the check would see nothing", len(files))
	}
	return files
}

var (
	// mdLink is an inline link or image: [text](target) or [text](target "title").
	mdLink = regexp.MustCompile(`\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	// repoPath is a path into this repository named in prose: it starts
	// with one of the repository's top-level folders.
	repoPath = regexp.MustCompile(`(?:^|[\s` + "`" + `(\[,;])((?:cmd|core|sdk|plugins|testenv|dir|imap|matrix|git|mastodon|docs)/[A-Za-z0-9_.*/-]*[A-Za-z0-9_*])`)
	// docRef is a docs/NAME.md reference in Go source.
	docRef = regexp.MustCompile(`docs/[a-z0-9_-]+\.md`)
)

// line is one line of a document outside fenced code blocks.
type line struct {
	n    int
	text string
}

func prose(t *testing.T, file string) []line {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []line
	fenced := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		s := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(s), "```") {
			fenced = !fenced
			continue
		}
		if !fenced {
			out = append(out, line{n, s})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// anchors returns the GitHub anchors of a Markdown file's headings.
func anchors(t *testing.T, file string) map[string]bool {
	t.Helper()
	m := map[string]bool{}
	for _, l := range prose(t, file) {
		if !strings.HasPrefix(l.text, "#") {
			continue
		}
		m[slug(strings.TrimLeft(l.text, "# "))] = true
	}
	return m
}

// slug is GitHub's heading anchor: lower case, punctuation other than '-'
// and '_' dropped, spaces become '-'.
func slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// TestDocLinks: every relative link in README.md and docs/*.md points at a
// file or folder that exists, and a #fragment at a heading of its target.
func TestDocLinks(t *testing.T) {
	checked := 0
	for _, file := range docFiles(t) {
		for _, l := range prose(t, file) {
			for _, m := range mdLink.FindAllStringSubmatch(l.text, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				checked++
				path, frag, _ := strings.Cut(target, "#")
				resolved := file
				if path != "" {
					resolved = filepath.Join(filepath.Dir(file), path)
					if _, err := os.Stat(resolved); err != nil {
						t.Errorf("%s:%d: link %q: %s does not exist", file, l.n, target, resolved)
						continue
					}
				}
				if frag != "" && strings.HasSuffix(resolved, ".md") && !anchors(t, resolved)[frag] {
					t.Errorf("%s:%d: link %q: %s has no heading with anchor #%s", file, l.n, target, resolved, frag)
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no relative links found: the check saw nothing")
	}
}

// TestDocPaths: every package, file or folder of this repository that the
// docs name in prose (cmd/…, core/…, sdk/…, an adapter's folder, testenv/…,
// docs/…) exists. Fenced code blocks are examples and are not checked.
func TestDocPaths(t *testing.T) {
	checked := 0
	for _, file := range docFiles(t) {
		for _, l := range prose(t, file) {
			for _, m := range repoPath.FindAllStringSubmatch(l.text, -1) {
				checked++
				if p := m[1]; !repoPathExists(p) {
					t.Errorf("%s:%d: names %s, which does not exist in the repository", file, l.n, p)
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no repository paths found in the docs: the check saw nothing")
	}
}

// repoPathExists accepts a path, a glob matching something, or a package
// followed by an identifier (core/peerstore.Store).
func repoPathExists(p string) bool {
	p = strings.TrimSuffix(strings.TrimRight(p, "."), "/")
	if strings.Contains(p, "*") {
		m, _ := filepath.Glob(p)
		return len(m) > 0
	}
	if _, err := os.Stat(p); err == nil {
		return true
	}
	if dir, ident, ok := cutLast(p, "."); ok && ident != "" && unicode.IsUpper(rune(ident[0])) {
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			return true
		}
	}
	return false
}

func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return s, "", false
}

// TestGoDocRefs: every docs/NAME.md that Go source or comments point to
// exists (error messages and comments send readers there).
func TestGoDocRefs(t *testing.T) {
	checked := 0
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != "." || d.Name() == "testdata" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, s := range strings.Split(string(b), "\n") {
			for _, ref := range docRef.FindAllString(s, -1) {
				checked++
				if _, err := os.Stat(ref); err != nil {
					t.Errorf("%s:%d: points to %s, which does not exist", path, i+1, ref)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked == 0 {
		t.Fatal("no docs/*.md references in Go source: the check saw nothing")
	}
}

func TestSlug(t *testing.T) {
	for in, want := range map[string]string{
		"How it fits together":                       "how-it-fits-together",
		"1. The contract in one page":                "1-the-contract-in-one-page",
		"4. Publish: batches and per-item results":   "4-publish-batches-and-per-item-results",
		"Appendix: decisions behind dir and the kit": "appendix-decisions-behind-dir-and-the-kit",
	} {
		if got := slug(in); got != want {
			t.Errorf("slug(%q) = %q, want %q", in, got, want)
		}
	}
}
