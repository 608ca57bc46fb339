package git_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/remora-p2p/remora/git"
	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/channeltest"
	"github.com/remora-p2p/remora/testenv"
)

// open configures member m of r with config overrides and closes it at the end.
func open(t *testing.T, r remote, m int, state string, over map[string]any) sdk.Channel {
	t.Helper()
	ch, err := openErr(t, r, m, state, over)
	if err != nil {
		t.Fatalf("configure member %d: %v", m, err)
	}
	t.Cleanup(func() { ch.Close() })
	return ch
}

func openErr(t *testing.T, r remote, m int, state string, over map[string]any) (sdk.Channel, error) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	return git.New().Configure(ctx, sdk.ConfigureRequest{
		ChannelID: fmt.Sprintf("m%d", m), Config: r.config(t, m, over), Secrets: r.secrets,
		StateDir: state, Logger: testLogger(t),
	})
}

func items(prefix string, n int) []sdk.PublishItem {
	out := make([]sdk.PublishItem, n)
	for i := range out {
		k := fmt.Sprintf("%s-%04d", prefix, i)
		out[i] = sdk.PublishItem{Data: []byte("envelope " + k), IdempotencyKey: k}
	}
	return out
}

// collector gathers deliveries by payload.
type collector struct {
	mu     sync.Mutex
	count  map[string]int
	cursor []byte
	ch     chan struct{}
}

func newCollector() *collector {
	return &collector{count: map[string]int{}, ch: make(chan struct{}, 1)}
}

func (c *collector) Deliver(_ context.Context, d sdk.Delivery) error {
	c.mu.Lock()
	if len(d.Data) > 0 {
		c.count[string(d.Data)]++
	}
	c.cursor = d.Cursor
	c.mu.Unlock()
	select {
	case c.ch <- struct{}{}:
	default:
	}
	return nil
}

func (c *collector) has(data string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count[data] > 0
}

func (c *collector) distinct() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.count)
}

func (c *collector) missing(want []sdk.PublishItem) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, it := range want {
		if c.count[string(it.Data)] == 0 {
			n++
		}
	}
	return n
}

func (c *collector) lastCursor() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cursor
}

// subscribe runs Subscribe until the test ends; it returns the collector and
// a channel with Subscribe's result.
func subscribe(t *testing.T, ch sdk.Channel, cursor []byte) (*collector, <-chan error, context.CancelFunc) {
	ctx, cancel := context.WithCancel(t.Context())
	c := newCollector()
	done := make(chan error, 1)
	go func() { done <- ch.Subscribe(ctx, sdk.SubscribeRequest{Cursor: cursor}, c) }()
	t.Cleanup(cancel)
	return c, done, cancel
}

func waitFor(t *testing.T, c *collector, want []sdk.PublishItem, d time.Duration, done <-chan error) {
	t.Helper()
	deadline := time.After(d)
	for c.missing(want) > 0 {
		select {
		case <-c.ch:
		case err := <-done:
			t.Fatalf("Subscribe returned %v with %d of %d missing", err, c.missing(want), len(want))
		case <-deadline:
			t.Fatalf("%d of %d items missing after %v", c.missing(want), len(want), d)
		}
	}
}

// TestFiveMembers: five channel instances publish and read concurrently
// through one git daemon remote; every envelope reaches every member, none
// is lost, none delivered twice.
func TestFiveMembers(t *testing.T) {
	r := daemonRemote(t)
	const members, per = 5, 40
	chans := make([]sdk.Channel, members)
	var all []sdk.PublishItem
	work := make([][]sdk.PublishItem, members)
	for m := range members {
		chans[m] = open(t, r, m, t.TempDir(), nil)
		work[m] = items(fmt.Sprintf("m%d", m), per)
		all = append(all, work[m]...)
	}
	cols := make([]*collector, members)
	dones := make([]<-chan error, members)
	for m := range members {
		cols[m], dones[m], _ = subscribe(t, chans[m], nil)
	}
	var wg sync.WaitGroup
	for m := range members {
		wg.Go(func() {
			for i := 0; i < per; i += 4 { // small batches, overlapping across members
				channeltest.Publish(t, chans[m], work[m][i:i+4]...)
			}
		})
	}
	wg.Wait()
	for m := range members {
		waitFor(t, cols[m], all, 2*time.Minute, dones[m])
	}
	time.Sleep(2 * time.Second) // catch late duplicates
	for m := range members {
		cols[m].mu.Lock()
		for data, n := range cols[m].count {
			if n != 1 {
				t.Errorf("member %d got %q %d times", m, data, n)
			}
		}
		if len(cols[m].count) != len(all) {
			t.Errorf("member %d got %d distinct items, want %d", m, len(cols[m].count), len(all))
		}
		cols[m].mu.Unlock()
	}
	h := chans[0].(sdk.Healther).Health(t.Context())
	t.Logf("member 0 health: %+v", h)
	if h.Counters["commits"] > int64(per) {
		t.Errorf("member 0 made %d commits for %d items in batches of 4: no batching", h.Counters["commits"], per)
	}
}

// TestForeignAndGarbage plants foreign commits, files, refs, an oversized
// file, a symlink and a submodule entry on the remote: they are skipped and
// counted, the member's own publishing goes on, nothing is lost.
func TestForeignAndGarbage(t *testing.T) {
	r := daemonRemote(t)
	over := map[string]any{"max_payload": 1024}
	pub := open(t, r, 0, t.TempDir(), over)
	first := items("a", 5)
	channeltest.Publish(t, pub, first...)

	bucket := time.Now().UTC().Format("2006010215")
	ref := git.DefaultNamespace + "m0"
	commitFiles(t, r.bare, ref, map[string][]byte{
		"README.md":                      []byte("# hello"),
		"log/notabucket/key":             []byte("x"),
		"log/" + bucket + "/bad.name":    []byte("x"),
		"log/" + bucket + "/big":         bytes.Repeat([]byte("B"), 2048),
		"log/" + bucket + "/foreign-key": []byte("foreign envelope"),
		"board/!!":                       []byte("x"),
	}, false, time.Time{})
	// a symlink and a submodule (gitlink) entry inside a bucket
	idx := filepath.Join(t.TempDir(), "index")
	env := []string{"GIT_INDEX_FILE=" + idx, "GIT_DIR=" + r.bare}
	run := func(args ...string) string {
		out, err := gitRun("", env, args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	run("read-tree", ref)
	blob := run("hash-object", "-w", "--stdin")
	run("update-index", "--add", "--cacheinfo", "120000,"+blob+",log/"+bucket+"/link")
	run("update-index", "--add", "--cacheinfo", "160000,"+strings.Repeat("ab", 20)+",log/"+bucket+"/sub")
	c := run("commit-tree", run("write-tree"), "-p", ref, "-m", "foreign")
	run("update-ref", ref, c)
	// refs in the namespace that are no member names, and a commit outside it
	run("update-ref", git.DefaultNamespace+"bad.name", c)
	run("update-ref", git.DefaultNamespace+"nested/x", c)
	run("update-ref", "refs/heads/main", c)
	// a member-like ref to a blob (git update-ref refuses; a raw write does not)
	if err := os.WriteFile(filepath.Join(r.bare, git.DefaultNamespace+"blobref"), []byte(blob+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	second := items("b", 5)
	channeltest.Publish(t, pub, second...) // rebases onto the foreign commits

	sub := open(t, r, 1, t.TempDir(), over)
	col, done, _ := subscribe(t, sub, nil)
	want := append(append([]sdk.PublishItem{}, first...), second...)
	want = append(want, sdk.PublishItem{Data: []byte("foreign envelope")}) // well-formed: core judges it
	waitFor(t, col, want, time.Minute, done)
	time.Sleep(time.Second)
	if n := col.distinct(); n != len(want) {
		t.Errorf("got %d distinct items, want %d (garbage delivered?)", n, len(want))
	}
	h := sub.(sdk.Healther).Health(t.Context())
	t.Logf("health: %+v", h)
	for k, min := range map[string]int64{"ignored_foreign": 5, "ignored_oversized": 1, "ignored_refs": 2, "ignored_nocommit_refs": 1} {
		if h.Counters[k] < min {
			t.Errorf("counter %s = %d, want >= %d", k, h.Counters[k], min)
		}
	}
	if h.State != sdk.HealthOK {
		t.Errorf("health %s: %s", h.State, h.Message)
	}
}

// TestDeletedRef: a member ref deleted on the remote invalidates cursors
// that include it; a rescan delivers what is left, and the member's next
// publish recreates its ref with everything it had.
func TestDeletedRef(t *testing.T) {
	r := daemonRemote(t)
	pub := open(t, r, 0, t.TempDir(), nil)
	other := open(t, r, 2, t.TempDir(), nil)
	first, kept := items("a", 3), items("k", 3)
	channeltest.Publish(t, pub, first...)
	channeltest.Publish(t, other, kept...)
	sub := open(t, r, 1, t.TempDir(), nil)
	col, done, cancel := subscribe(t, sub, nil)
	waitFor(t, col, append(append([]sdk.PublishItem{}, first...), kept...), time.Minute, done)
	cancel()
	<-done
	cursor := col.lastCursor()

	gitCLI(t, "", "--git-dir="+r.bare, "update-ref", "-d", git.DefaultNamespace+"m0")
	ctx, cancel2 := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel2()
	err := sub.Subscribe(ctx, sdk.SubscribeRequest{Cursor: cursor}, newCollector())
	if !errors.Is(err, sdk.ErrCursorInvalid) {
		t.Fatalf("subscribe after the ref was deleted: %v, want cursor invalid", err)
	}
	t.Logf("error: %v", err)

	second := items("b", 2)
	channeltest.Publish(t, pub, second...)
	col2, done2, _ := subscribe(t, sub, nil)
	waitFor(t, col2, append(append(append([]sdk.PublishItem{}, first...), second...), kept...), time.Minute, done2)
}

// TestCompact squashes a member's history; a subscriber holding a cursor
// gets cursor invalid, and a rescan loses nothing.
func TestCompact(t *testing.T) {
	r := daemonRemote(t)
	pubState := t.TempDir()
	random := map[string]any{"member": nil} // the default: a random persisted name
	pub := open(t, r, 0, pubState, random)
	var all []sdk.PublishItem
	for i := range 5 {
		b := items(fmt.Sprintf("c%d", i), 3)
		channeltest.Publish(t, pub, b...)
		all = append(all, b...)
	}
	sub := open(t, r, 1, t.TempDir(), nil)
	col, done, cancel := subscribe(t, sub, nil)
	waitFor(t, col, all, time.Minute, done)
	cancel()
	<-done
	member, err := os.ReadFile(filepath.Join(pubState, "member"))
	if err != nil {
		t.Fatal(err)
	}
	ref := git.DefaultNamespace + strings.TrimSpace(string(member))
	before := gitCLI(t, "", "--git-dir="+r.bare, "rev-list", "--count", ref)
	// as `remora channel compact` does it: from the config and state dir,
	// while the channel instance stays up
	if err := git.CompactConfig(t.Context(), sdk.ConfigureRequest{Config: r.config(t, 0, random), StateDir: pubState}); err != nil {
		t.Fatalf("compact: %v", err)
	}
	after := gitCLI(t, "", "--git-dir="+r.bare, "rev-list", "--count", ref)
	if after != "1" {
		t.Fatalf("after compact the ref has %s commits (before %s), want 1", after, before)
	}
	err = sub.Subscribe(t.Context(), sdk.SubscribeRequest{Cursor: col.lastCursor()}, newCollector())
	if !errors.Is(err, sdk.ErrCursorInvalid) {
		t.Fatalf("subscribe after compact: %v, want cursor invalid", err)
	}
	more := items("d", 2)
	channeltest.Publish(t, pub, more...) // the running instance rebases onto the squashed ref
	if err := git.Compact(t.Context(), pub); err != nil {
		t.Fatalf("compact the running instance: %v", err)
	}
	col2, done2, _ := subscribe(t, sub, nil)
	waitFor(t, col2, append(all, more...), time.Minute, done2)
	// metadata stays neutral
	log := gitCLI(t, "", "--git-dir="+r.bare, "log", "--format=%an <%ae>|%cn <%ce>|%s", ref)
	for _, l := range strings.Split(log, "\n") {
		if l != "sync <sync@localhost>|sync <sync@localhost>|sync" {
			t.Errorf("commit metadata %q is not neutral", l)
		}
	}
}

// TestRetentionPrunes: own buckets older than the retention are dropped at
// the next flush and never delivered.
func TestRetentionPrunes(t *testing.T) {
	r := daemonRemote(t)
	old := time.Now().Add(-30 * time.Hour).UTC().Format("2006010215")
	commitFiles(t, r.bare, git.DefaultNamespace+"m0", map[string][]byte{"log/" + old + "/stale": []byte("stale")}, false, time.Time{})
	pub := open(t, r, 0, t.TempDir(), map[string]any{"retention": "24h"})
	fresh := items("f", 2)
	channeltest.Publish(t, pub, fresh...)
	files := gitCLI(t, "", "--git-dir="+r.bare, "ls-tree", "-r", "--name-only", git.DefaultNamespace+"m0")
	if strings.Contains(files, old) {
		t.Errorf("expired bucket %s still on the ref:\n%s", old, files)
	}
	sub := open(t, r, 1, t.TempDir(), map[string]any{"retention": "24h"})
	col, done, _ := subscribe(t, sub, nil)
	waitFor(t, col, fresh, time.Minute, done)
	if col.has("stale") {
		t.Error("expired item delivered")
	}
}

// TestUnreachableThenUp: with the remote down, Configure works offline,
// Publish fails per item with unavailable at its deadline and keeps the
// item queued; once a server answers, the queued item arrives.
func TestUnreachableThenUp(t *testing.T) {
	root := t.TempDir()
	newBare(t, filepath.Join(root, "r.git"))
	const port = 19428
	r := remote{url: fmt.Sprintf("git://127.0.0.1:%d/r.git", port), bare: filepath.Join(root, "r.git")}
	ch := open(t, r, 0, t.TempDir(), nil)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	it := items("q", 1)
	res, err := ch.Publish(ctx, sdk.PublishRequest{Items: it})
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	if !errors.Is(res.Results[0].Err, sdk.ErrUnavailable) {
		t.Fatalf("publish to a down remote: %v, want unavailable", res.Results[0].Err)
	}
	t.Logf("error: %v", res.Results[0].Err)
	if h := ch.(sdk.Healther).Health(t.Context()); h.State != sdk.HealthDegraded {
		t.Errorf("health %s (%s), want degraded", h.State, h.Message)
	}
	sctx, scancel := context.WithTimeout(t.Context(), time.Second)
	defer scancel()
	if err := ch.Subscribe(sctx, sdk.SubscribeRequest{}, newCollector()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("subscribe to a down remote: %v, want it to keep retrying until its context ends", err)
	}

	startDaemon(t, root, port)
	sub := open(t, r, 1, t.TempDir(), nil)
	col, done, _ := subscribe(t, sub, nil)
	waitFor(t, col, it, time.Minute, done) // the queued item was pushed after all
}

// startDaemon runs a git daemon for base on port until the test ends.
func startDaemon(t *testing.T, base string, port int) {
	exe, err := gitRun("", nil, "--exec-path")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(exe, "git-daemon"), "--reuseaddr", "--listen=127.0.0.1",
		fmt.Sprintf("--port=%d", port), "--base-path="+base, "--export-all", "--enable=receive-pack")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for range 100 {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("git daemon did not start")
}

// TestConfigureErrors: wrong credentials, a wrong or unknown host key and a
// missing repository are clear, typed errors at Configure.
func TestConfigureErrors(t *testing.T) {
	sshR := sshRemote(t)
	_, pemKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	blk, err := ssh.MarshalPrivateKey(pemKey, "")
	if err != nil {
		t.Fatal(err)
	}
	strangerKey := filepath.Join(t.TempDir(), "stranger")
	if err := os.WriteFile(strangerKey, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyKH := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(emptyKH, nil, 0o600)
	other := testenv.Need(t, "git", "REMORA_GIT_OTHER_KNOWN_HOSTS")[0]
	daemon := daemonRemote(t)
	missing := daemon
	missing.url = daemon.url[:strings.LastIndex(daemon.url, "/")] + "/no-such-repo.git"

	tests := []struct {
		name   string
		r      remote
		over   map[string]any
		code   error
		phrase string
	}{
		{"wrong ssh key", sshR, map[string]any{"ssh_key_file": strangerKey}, sdk.ErrAuthFailed, "rejected the credentials"},
		{"host key mismatch", sshR, map[string]any{"known_hosts_file": other}, sdk.ErrAuthFailed, "does NOT match"},
		{"unknown host", sshR, map[string]any{"known_hosts_file": emptyKH}, sdk.ErrBadConfig, "is not in"},
		{"no known_hosts", sshR, map[string]any{"known_hosts_file": emptyKH + ".absent"}, sdk.ErrBadConfig, "known_hosts_file"},
		{"missing repository", missing, nil, sdk.ErrNotFound, "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch, err := openErr(t, tt.r, 0, t.TempDir(), tt.over)
			if err == nil {
				ch.Close()
				t.Fatal("configure succeeded")
			}
			if !errors.Is(err, tt.code) || !strings.Contains(err.Error(), tt.phrase) {
				t.Fatalf("got %v, want %v mentioning %q", err, tt.code, tt.phrase)
			}
			t.Logf("error: %v", err)
		})
	}
}

// TestHTTPToken: smart HTTP with basic auth (git http-backend behind a
// token check, loopback only): the token from secrets works, a wrong one is
// auth failed.
func TestHTTPToken(t *testing.T) {
	exe, err := gitRun("", nil, "--exec-path")
	if err != nil {
		t.Skipf("git CLI missing: %v", err)
	}
	root := t.TempDir()
	newBare(t, filepath.Join(root, "r.git"))
	const token = "s3cret-token"
	backend := &cgi.Handler{
		Path: filepath.Join(exe, "git-http-backend"),
		Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1",
			"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=http.receivepack", "GIT_CONFIG_VALUE_0=true"},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if _, p, ok := req.BasicAuth(); !ok || p != token {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		req.Header.Set("REMOTE_USER", "circle") // http-backend wants a user to push
		backend.ServeHTTP(w, req)
	}))
	defer srv.Close()
	r := remote{url: srv.URL + "/r.git", bare: filepath.Join(root, "r.git"), secrets: map[string]string{"token": token}}

	bad := r
	bad.secrets = map[string]string{"token": "wrong"}
	if ch, err := openErr(t, bad, 0, t.TempDir(), nil); !errors.Is(err, sdk.ErrAuthFailed) {
		if ch != nil {
			ch.Close()
		}
		t.Fatalf("wrong token: %v, want auth failed", err)
	} else if strings.Contains(err.Error(), "wrong") {
		t.Fatalf("error leaks the secret: %v", err)
	}

	pub := open(t, r, 0, t.TempDir(), nil)
	it := items("h", 3)
	channeltest.Publish(t, pub, it...)
	sub := open(t, r, 1, t.TempDir(), nil)
	col, done, _ := subscribe(t, sub, nil)
	waitFor(t, col, it, time.Minute, done)
}

// TestSSHKeyFromSecret: the ssh key given as the secret "ssh_key" (no key
// file) works for publishing and reading.
func TestSSHKeyFromSecret(t *testing.T) {
	r := sshRemote(t)
	pem, err := os.ReadFile(r.extra["ssh_key_file"].(string))
	if err != nil {
		t.Fatal(err)
	}
	r.secrets = map[string]string{"ssh_key": string(pem)}
	delete(r.extra, "ssh_key_file")
	pub := open(t, r, 0, t.TempDir(), nil)
	it := items("s", 3)
	channeltest.Publish(t, pub, it...)
	sub := open(t, r, 1, t.TempDir(), nil)
	col, done, _ := subscribe(t, sub, nil)
	waitFor(t, col, it, time.Minute, done)

	bad := r
	bad.secrets = map[string]string{"ssh_key": "not a key"}
	if _, err := openErr(t, bad, 2, t.TempDir(), nil); !errors.Is(err, sdk.ErrBadConfig) || strings.Contains(err.Error(), "not a key") {
		t.Fatalf("garbage ssh_key secret: %v, want bad config that does not echo the secret", err)
	}
}

// TestFileConcurrentPublishers: many members push one item at a time to
// one file:// remote while two of them read it. Every push lists the refs
// while others update theirs (each push and fetch loads its own storage of
// the in-process server); a ref write that readers could see half done
// failed a Publish with "ref file is empty" (TestConformance/file/Concurrent
// in CI). Fails before atomicRefs within a few runs; -count stresses it.
func TestFileConcurrentPublishers(t *testing.T) {
	r := fileRemote(t)
	const members, per = 6, 12
	over := map[string]any{"flush_interval": "10ms", "poll_min": "100ms", "poll_max": "200ms"}
	chans := make([]sdk.Channel, members)
	work := make([][]sdk.PublishItem, members)
	var all []sdk.PublishItem
	for m := range members {
		chans[m] = open(t, r, m, t.TempDir(), over)
		work[m] = items(fmt.Sprintf("m%d", m), per)
		all = append(all, work[m]...)
	}
	cols := make([]*collector, 2)
	dones := make([]<-chan error, 2)
	for m := range cols {
		cols[m], dones[m], _ = subscribe(t, chans[m], nil)
	}
	errs := make(chan error, members*per)
	var wg sync.WaitGroup
	for m := range members {
		wg.Go(func() {
			for _, it := range work[m] {
				ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
				resp, err := chans[m].Publish(ctx, sdk.PublishRequest{Items: []sdk.PublishItem{it}})
				cancel()
				if err == nil {
					err = resp.Results[0].Err
				}
				if err != nil {
					errs <- fmt.Errorf("member %d: %w", m, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent publish: %v", err)
	}
	for m := range cols {
		waitFor(t, cols[m], all, time.Minute, dones[m])
	}
	for m := range cols {
		if n := chans[m].(sdk.Healther).Health(t.Context()).Counters["fetch_errors"]; n > 0 {
			t.Errorf("member %d: %d fetches failed while others pushed", m, n)
		}
	}
}
