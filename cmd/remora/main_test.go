package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/testenv"
)

// bin is the remora binary built once for these tests: the daemon re-executes
// it for its adapters, as in production.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "remora-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "remora")
	flag.Parse()
	args := []string{"build", "-race", "-o", bin, "."}
	if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
		args = []string{"build", "-o", bin, "."} // figures without the race detector's cost
	}
	build := exec.Command("go", args...)
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build remora:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// home is one device's state folder.
type home struct {
	t    testing.TB
	dir  string
	name string
	run  *exec.Cmd
	log  *testenv.Buffer
	// level is the daemon's log level (default debug); netns runs it in a
	// network namespace of its own, reachable only through its channels.
	level string
	netns bool
	// inNetns runs the daemon in this named network namespace (ip netns).
	inNetns string
	// api is the one client of this home's daemon: a client per call
	// would leave a connection open each time.
	api *api.Client
}

func newHome(t testing.TB, name string) *home {
	t.Helper()
	// Unix socket paths are short: keep the home under /tmp.
	dir, err := os.MkdirTemp("", "rh-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	h := &home{t: t, dir: dir, name: name, api: api.NewClient(filepath.Join(dir, "api.sock"))}
	h.ok("init", "--name", name)
	return h
}

// remora runs the CLI against this home.
func (h *home) remora(args ...string) (string, error) {
	cmd := exec.Command(bin, append([]string{"--home", h.dir}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (h *home) ok(args ...string) string {
	h.t.Helper()
	out, err := h.remora(args...)
	if err != nil {
		h.t.Fatalf("remora %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (h *home) fails(args ...string) string {
	h.t.Helper()
	out, err := h.remora(args...)
	if err == nil {
		h.t.Fatalf("remora %s succeeded, want an error:\n%s", strings.Join(args, " "), out)
	}
	return out
}

// start runs `remora run` and waits until the API answers.
func (h *home) start() {
	h.t.Helper()
	if err := h.launch(); err != nil {
		h.t.Fatal(err)
	}
}

// launch is start that returns its error, for goroutines other than the
// test's (chaos).
func (h *home) launch() error {
	h.log = &testenv.Buffer{}
	level := h.level
	if level == "" {
		level = "debug"
	}
	h.run = exec.Command(bin, "--home", h.dir, "run", "--log-level", level)
	if h.inNetns != "" {
		h.run = exec.Command("ip", append([]string{"netns", "exec", h.inNetns}, h.run.Args...)...)
	}
	h.run.Stdout, h.run.Stderr = h.log, h.log
	if h.netns {
		h.run.SysProcAttr = isolatedNet()
	}
	if err := h.run.Start(); err != nil {
		return err
	}
	h.t.Cleanup(h.stop)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if st, err := h.client().Status(context.Background()); err == nil && st.Ready {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s's daemon not answering 60 s after its start", h.name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *home) stop() {
	if h.run == nil || h.run.Process == nil || h.run.ProcessState != nil {
		return
	}
	h.run.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { h.run.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		h.run.Process.Kill()
		<-done
	}
	h.saveLog()
}

// kill stops the daemon with SIGKILL, as a crash would.
func (h *home) kill() {
	h.run.Process.Kill()
	h.run.Wait()
	h.saveLog()
}

// saveLog keeps the daemon's log for a failed test: its tail in the test
// output, the whole of it in $REMORA_TEST_LOGS when that is set.
func (h *home) saveLog() {
	if h.log == nil {
		return
	}
	if h.t.Failed() {
		tail := h.log.Bytes()
		if len(tail) > 8<<10 {
			tail = tail[len(tail)-8<<10:]
		}
		h.t.Logf("%s's daemon log (last %d bytes):\n%s", h.name, len(tail), tail)
	}
	if dir := os.Getenv("REMORA_TEST_LOGS"); dir != "" {
		f, err := os.CreateTemp(dir, h.name+"-*.log")
		if err == nil {
			f.Write(h.log.Bytes())
			f.Close()
		}
	}
}

func (h *home) client() *api.Client { return h.api }

// circleOf2 makes a circle of a and b over a shared dir channel, with both
// daemons running, and returns its ID.
func circleOf2(t testing.TB, a, b *home) string {
	t.Helper()
	shared := t.TempDir()
	for _, h := range []*home{a, b} {
		addFolderChannel(h, shared)
		h.start()
	}
	out := a.ok("circle", "create", "friends")
	id := strings.Fields(out)[1]
	inv := a.ok("invite", "--in-person")
	var code string
	for _, f := range strings.Fields(inv) {
		if strings.HasPrefix(f, "remora1") {
			code = f
		}
	}
	if code == "" {
		t.Fatalf("no invite in:\n%s", inv)
	}
	if out := b.ok("join", code, "--timeout", "60s"); !strings.Contains(out, "joined") {
		t.Fatalf("join: %s", out)
	}
	return id
}

func TestConfigErrorsNameTheField(t *testing.T) {
	h := newHome(t, "alice")
	tests := []struct {
		name, config, want string
	}{
		{"unknown field", "name = \"a\"\ncolour = \"red\"\n", "colour"},
		{"unknown adapter", "name = \"a\"\n[[channel]]\nname = \"x\"\nadapter = \"imapp\"\n", "channel[1].adapter: unknown adapter \"imapp\" (available: dir"},
		{"bad secret", "name = \"a\"\n[[channel]]\nname = \"x\"\nadapter = \"dir\"\n[channel.secrets]\npassword = { env = \"A\", file = \"/b\" }\n", "channel[1].secrets.password: give exactly one of env, file or command"},
		{"bad duration", "name = \"a\"\npresence_interval = \"soon\"\n", "presence_interval"},
		{"bad adapter_processes", "name = \"a\"\nadapter_processes = \"few\"\n", "adapter_processes: \"few\" is neither"},
		{"not TOML", "name = \n", "config.toml"},
		{"missing name", "mdns = true\n", "name: give your display name"},
		{"bad mdns mode", "name = \"a\"\n[lan]\nmdns = \"sometimes\"\n", "lan: lan: mdns mode \"sometimes\": want auto, on or off"},
		{"bad public network", "name = \"a\"\n[lan]\npublic = [\"10.8.0.0\"]\n", "lan: public: \"10.8.0.0\" is not a network (e.g. \"192.168.1.0/24\")"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(h.dir, "config.toml"), []byte(tt.config), 0o600); err != nil {
				t.Fatal(err)
			}
			out := h.fails("channel", "list")
			if !strings.Contains(out, tt.want) {
				t.Fatalf("error does not name the field:\n%s\nwant it to contain %q", out, tt.want)
			}
		})
	}
}

func TestUnknownAdapterListsAvailable(t *testing.T) {
	h := newHome(t, "alice")
	out := h.fails("adapter", "nope")
	if !strings.Contains(out, `unknown adapter "nope" (available: dir, git, imap, mastodon, matrix`) {
		t.Fatalf("got:\n%s", out)
	}
	out = h.fails("channel", "add", "x", "--adapter", "nope", "--set", "a=b")
	if !strings.Contains(out, "available: dir") {
		t.Fatalf("channel add with an unknown adapter:\n%s", out)
	}
}

func TestDaemonNotRunning(t *testing.T) {
	h := newHome(t, "alice")
	for _, args := range [][]string{{"status"}, {"send", "hi"}, {"peers"}, {"listen", "--follow=false"}} {
		out := h.fails(args...)
		if !strings.Contains(out, "not running") || !strings.Contains(out, "remora run") {
			t.Errorf("remora %s: %q does not say how to start the daemon", args[0], out)
		}
	}
}

func TestDescribe(t *testing.T) {
	h := newHome(t, "alice")
	out := h.ok("adapter", "dir", "describe")
	if !strings.Contains(out, `"name": "dir"`) || !strings.Contains(out, `"idempotency"`) {
		t.Fatalf("describe:\n%s", out)
	}
}

func TestBadInvites(t *testing.T) {
	if testing.Short() {
		t.Skip("runs daemons")
	}
	a, b := newHome(t, "alice"), newHome(t, "bob")
	circleOf2(t, a, b)
	tests := []struct {
		name, invite, want string
	}{
		{"garbage", "hello", "invite"},
		{"mistyped", "remora1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq", "invite"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := b.fails("join", tt.invite, "--timeout", "5s")
			if !strings.Contains(strings.ToLower(out), tt.want) {
				t.Fatalf("got %q", out)
			}
		})
	}
	t.Run("expired", func(t *testing.T) {
		inv := a.ok("invite", "--ttl", "1s")
		time.Sleep(1500 * time.Millisecond)
		c := newHome(t, "carol")
		c.ok("channel", "add", "folder", "--adapter", "dir", "--set", "path=/tmp/nowhere-"+c.name)
		c.start()
		out := c.fails("join", inviteCode(inv), "--timeout", "5s")
		if !strings.Contains(out, "expired") {
			t.Fatalf("got %q", out)
		}
	})
}

func inviteCode(out string) string {
	for _, f := range strings.Fields(out) {
		if strings.HasPrefix(f, "remora1") {
			return f
		}
	}
	return ""
}

// TestKill9DuringBurst: 1,000 sends through the API; the daemon is killed
// with SIGKILL in the middle; after a restart every accepted message reaches
// the other member exactly once.
func TestKill9DuringBurst(t *testing.T) {
	if testing.Short() {
		t.Skip("runs daemons")
	}
	a, b := newHome(t, "alice"), newHome(t, "bob")
	id := circleOf2(t, a, b)
	ctx := context.Background()
	testenv.WaitFor(t, "alice and bob connected", 60*time.Second, func() bool {
		peers, err := a.client().Peers(ctx)
		return err == nil && len(peers) == 1 && peers[0].Path != "channel" && peers[0].Path != "none"
	})
	var mu sync.Mutex
	accepted := map[string]bool{} // Send returned OK: must arrive exactly once
	inFlight := map[string]bool{} // Send failed as the daemon died: at most once
	c := a.client()
	next := make(chan int)
	var sent atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range next {
				text := fmt.Sprintf("burst %04d", i)
				_, err := c.Send(ctx, api.SendRequest{Circle: id, Text: text})
				mu.Lock()
				if err == nil {
					accepted[text] = true
				} else {
					inFlight[text] = true
				}
				mu.Unlock()
				sent.Add(1)
			}
		})
	}
	i := 0
	for ; i < 1000; i++ {
		if sent.Load() >= 400 {
			break
		}
		next <- i
	}
	a.kill() // with up to eight sends in flight
	close(next)
	wg.Wait()
	a.start()
	for ; i < 1000; i++ {
		text := fmt.Sprintf("burst %04d", i)
		if _, err := c.Send(ctx, api.SendRequest{Circle: id, Text: text}); err != nil {
			t.Fatalf("send after restart: %v", err)
		}
		accepted[text] = true
	}
	testenv.WaitFor(t, "bob has every accepted message", 120*time.Second, func() bool {
		got := 0
		for _, m := range allMessages(t, b) {
			if accepted[m.Text] {
				got++
			}
		}
		return got >= len(accepted)
	})
	all := allMessages(t, b)
	seen := map[string]int{}
	for _, m := range all {
		seen[m.Text]++
	}
	for text := range accepted {
		if seen[text] != 1 {
			t.Errorf("accepted %q arrived %d times, want once", text, seen[text])
		}
	}
	for text := range inFlight {
		if seen[text] > 1 {
			t.Errorf("in-flight %q arrived %d times, want at most once", text, seen[text])
		}
	}
	t.Logf("1000 sends: %d accepted, all delivered once; %d in flight at the kill", len(accepted), len(inFlight))
}

// allMessages pages through h's whole inbox.
func allMessages(t testing.TB, h *home) []api.Message {
	t.Helper()
	var all []api.Message
	for after := int64(0); ; {
		msgs, err := h.client().Messages(context.Background(), after, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 {
			return all
		}
		all = append(all, msgs...)
		after = msgs[len(msgs)-1].Seq
	}
}

// TestDoctorWrongPassword: a mail channel with a wrong password; doctor names
// the channel, shows the server's refusal and says what to do.
func TestDoctorWrongPassword(t *testing.T) {
	v := testenv.Need(t, "mail", "REMORA_MAIL_IMAPS", "REMORA_MAIL_CA")
	h := newHome(t, "alice")
	h.ok("channel", "add", "mail", "--adapter", "imap",
		"--set", "mode=shared", "--set", "imap="+v[0], "--set", "imap_tls=implicit", "--set", "ca_file="+v[1],
		"--set", "username=alice", "--set", "address=alice@example.test",
		"--secret", "password=env:REMORA_TEST_WRONG_PASSWORD")
	cmd := exec.Command(bin, "--home", h.dir, "doctor")
	cmd.Env = append(os.Environ(), "REMORA_TEST_WRONG_PASSWORD=not-alices-password")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("doctor passed with a wrong password:\n%s", out)
	}
	for _, want := range []string{"FAIL channel mail", "auth failed", "check the password or token"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("doctor output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "not-alices-password") {
		t.Errorf("doctor printed the secret:\n%s", out)
	}
}

// TestAdapterProcesses: by default the daemon runs its built-in adapters in
// one process serving every kind; adapter_processes = "separate" gives each
// kind its own. doctor says which.
func TestAdapterProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("runs daemons")
	}
	for _, tt := range []struct{ procs, cmdline, doctor string }{
		{"", "adapter dir+git+imap+mastodon+matrix", "the built-in adapters share one"},
		{"separate", "adapter dir", "one per adapter kind"},
	} {
		t.Run("procs="+tt.procs, func(t *testing.T) {
			h := newHome(t, "alice")
			editConfig(t, h, func(c *Config) { c.AdapterProcesses = tt.procs })
			h.ok("channel", "add", "folder", "--adapter", "dir", "--set", "path="+t.TempDir())
			if out, _ := h.remora("doctor"); !strings.Contains(out, tt.doctor) {
				t.Errorf("doctor does not say %q:\n%s", tt.doctor, out)
			}
			h.start()
			var got []string
			testenv.WaitFor(t, "the adapter process", 30*time.Second, func() bool {
				got = nil
				for _, p := range children(h.run.Process.Pid) {
					b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
					got = append(got, strings.Join(strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")[1:], " "))
				}
				return len(got) > 0
			})
			if len(got) != 1 || !strings.HasSuffix(got[0], tt.cmdline) {
				t.Fatalf("adapter processes %q, want one ending in %q", got, tt.cmdline)
			}
		})
	}
}
