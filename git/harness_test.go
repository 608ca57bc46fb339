package git_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/remora-p2p/remora/git"
	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/channeltest/faultproxy"
	"github.com/remora-p2p/remora/testenv"
)

// remote is one fresh bare repository on a real server, and how to reach it.
type remote struct {
	url     string            // what the channel is configured with
	bare    string            // the repository on disk, for the backend hooks
	extra   map[string]any    // extra config fields (ssh key, known_hosts)
	secrets map[string]string // secrets for Configure
	proxy   *faultproxy.Proxy // between the channel and the server, if any
}

// proxied puts the server of mk's remotes behind a faultproxy: the URL's
// host:port becomes the proxy's.
func proxied(mk func(testing.TB) remote) func(testing.TB) remote {
	return func(t testing.TB) remote {
		r := mk(t)
		u, err := url.Parse(r.url)
		if err != nil {
			t.Fatal(err)
		}
		if r.proxy, err = faultproxy.New(u.Host); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.proxy.Close() })
		u.Host = r.proxy.Addr()
		r.url = u.String()
		return r
	}
}

// newBare creates a fresh bare repository at path with the git CLI (tests
// only; the adapter never runs git).
func newBare(t testing.TB, path string) {
	t.Helper()
	gitCLI(t, "", "init", "-q", "--bare", "-b", "main", path)
}

func uniq() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func fileRemote(t testing.TB) remote {
	bare := filepath.Join(t.TempDir(), "circle.git")
	newBare(t, bare)
	return remote{url: "file://" + bare, bare: bare}
}

func daemonRemote(t testing.TB) remote {
	v := testenv.Need(t, "git", "REMORA_GIT_ROOT", "REMORA_GIT_DAEMON_URL")
	name := "t-" + uniq() + ".git"
	bare := filepath.Join(v[0], name)
	newBare(t, bare)
	t.Cleanup(func() { os.RemoveAll(bare) })
	return remote{url: v[1] + "/" + name, bare: bare}
}

func sshRemote(t testing.TB) remote {
	v := testenv.Need(t, "git", "REMORA_GIT_ROOT", "REMORA_GIT_SSH_URL", "REMORA_GIT_SSH_KEY", "REMORA_GIT_KNOWN_HOSTS")
	name := "t-" + uniq() + ".git"
	bare := filepath.Join(v[0], name)
	newBare(t, bare)
	t.Cleanup(func() { os.RemoveAll(bare) })
	return remote{
		url:   v[1] + "/" + name,
		bare:  bare,
		extra: map[string]any{"ssh_key_file": v[2], "known_hosts_file": v[3]},
	}
}

// fast are intervals that keep tests short.
var fast = map[string]any{"flush_interval": "100ms", "poll_min": "250ms", "poll_max": "1s"}

// config returns the channel config for member m of r, with overrides.
func (r remote) config(t testing.TB, m int, over map[string]any) json.RawMessage {
	t.Helper()
	c := map[string]any{"remote": r.url, "member": fmt.Sprintf("m%d", m)}
	for k, v := range fast {
		c[k] = v
	}
	for k, v := range r.extra {
		c[k] = v
	}
	for k, v := range over {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// gitCLI runs the git command line (tests only), isolated from the host's
// git configuration, and returns its trimmed output.
func gitCLI(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	out, err := gitRun(stdin, nil, args...)
	if err != nil {
		t.Fatalf("git %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func gitRun(stdin string, env []string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Env = append(os.Environ(),
		"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=foreign", "GIT_AUTHOR_EMAIL=foreign@example.test",
		"GIT_COMMITTER_NAME=foreign", "GIT_COMMITTER_EMAIL=foreign@example.test")
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%w: %s", err, stderr.String())
	}
	return strings.TrimSpace(out.String()), nil
}

// commitFiles adds files (path -> content) to ref in the bare repository
// as a foreign commit, created directly on the server. It returns the new
// commit. With orphan, the commit has no parent and keeps the ref's tree
// (a force push of rewritten history).
func commitFiles(t testing.TB, bare, ref string, files map[string][]byte, orphan bool, when time.Time) string {
	t.Helper()
	idx := filepath.Join(t.TempDir(), "index")
	env := []string{"GIT_INDEX_FILE=" + idx, "GIT_DIR=" + bare}
	if !when.IsZero() {
		d := fmt.Sprintf("%d +0000", when.Unix())
		env = append(env, "GIT_AUTHOR_DATE="+d, "GIT_COMMITTER_DATE="+d)
	}
	run := func(stdin string, args ...string) string {
		out, err := gitRun(stdin, env, args...)
		if err != nil {
			t.Fatalf("git %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	parent, _ := gitRun("", env, "rev-parse", "--verify", "-q", ref)
	if parent != "" {
		run("", "read-tree", parent)
	} else {
		run("", "read-tree", "--empty")
	}
	for p, data := range files {
		h := run(string(data), "hash-object", "-w", "--stdin")
		run("", "update-index", "--add", "--cacheinfo", "100644,"+h+","+p)
	}
	tree := run("", "write-tree")
	args := []string{"commit-tree", tree, "-m", "foreign commit"}
	if parent != "" && !orphan {
		args = append(args, "-p", parent)
	}
	c := run("", args...)
	run("", "update-ref", ref, c)
	return c
}

// harness is the conformance kit's view of one remote.
type harness struct {
	r      remote
	states []string
	t      *testing.T
}

func newHarness(mk func(testing.TB) remote) func(t *testing.T) *harness {
	return func(t *testing.T) *harness {
		return &harness{r: mk(t), states: []string{t.TempDir(), t.TempDir()}, t: t}
	}
}

func (h *harness) Open(ctx context.Context, t *testing.T, a sdk.Adapter, m int) (sdk.Channel, error) {
	return a.Configure(ctx, sdk.ConfigureRequest{
		ChannelID: fmt.Sprintf("kit-%d", m),
		Config:    h.r.config(t, m, nil),
		Secrets:   h.r.secrets,
		StateDir:  h.states[m],
		Logger:    testLogger(t),
	})
}

// Proxies lets the kit take the server away (none for file://).
func (h *harness) Proxies() []*faultproxy.Proxy {
	if h.r.proxy == nil {
		return nil
	}
	return []*faultproxy.Proxy{h.r.proxy}
}

func (h *harness) Members() int       { return len(h.states) }
func (h *harness) Address(int) string { return "" }

// InvalidateCursor rewrites every member ref as a force push would: a new
// parentless commit with the same files.
func (h *harness) InvalidateCursor(ctx context.Context, t *testing.T) error {
	refs := gitCLI(t, "", "--git-dir="+h.r.bare, "for-each-ref", "--format=%(refname)", git.DefaultNamespace)
	if refs == "" {
		return fmt.Errorf("no member refs to rewrite")
	}
	for _, ref := range strings.Fields(refs) {
		commitFiles(t, h.r.bare, ref, nil, true, time.Time{})
	}
	return nil
}

// InsertBackdated commits data as a log file in a bucket two hours old on
// member's ref, directly on the server (a late-synced, older commit).
func (h *harness) InsertBackdated(ctx context.Context, t *testing.T, m int, data []byte) error {
	old := time.Now().Add(-2 * time.Hour)
	p := "log/" + old.UTC().Format("2006010215") + "/bd-" + uniq()
	commitFiles(t, h.r.bare, fmt.Sprintf(git.DefaultNamespace+"m%d", m), map[string][]byte{p: data}, false, old)
	return nil
}

// StateDir lets the kit lose member m's state (its clone) or put back an
// older copy.
func (h *harness) StateDir(m int) string { return h.states[m] }
