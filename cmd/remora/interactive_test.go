package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/remora-p2p/remora/mastodon/mastodontest"
	"github.com/remora-p2p/remora/matrix"
	"github.com/remora-p2p/remora/matrix/matrixtest"
	"github.com/remora-p2p/remora/testenv"
)

// terminal runs the remora binary on a pseudo-terminal, the way a person
// at a shell does: the prompts only appear when stdin is a terminal.
type terminal struct {
	t    *testing.T
	pty  *os.File
	mu   sync.Mutex
	out  bytes.Buffer
	read chan struct{} // closed when the output ends
	done chan error    // the command's exit
}

func (h *home) terminal(t *testing.T, env []string, args ...string) *terminal {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--home", h.dir}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	f, err := pty.Start(cmd)
	if err != nil {
		t.Fatalf("start on a terminal: %v", err)
	}
	tm := &terminal{t: t, pty: f, read: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		defer close(tm.read)
		buf := make([]byte, 4096)
		for {
			n, err := f.Read(buf)
			tm.mu.Lock()
			tm.out.Write(buf[:n])
			tm.mu.Unlock()
			if err != nil {
				return // EIO once the command has exited
			}
		}
	}()
	go func() { tm.done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		f.Close()
	})
	return tm
}

func (tm *terminal) output() string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tm.out.String()
}

// expect waits until the output shows s and returns the output so far.
func (tm *terminal) expect(s string) string {
	tm.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if out := tm.output(); strings.Contains(out, s) {
			return out
		}
		select {
		case <-tm.read:
			if out := tm.output(); !strings.Contains(out, s) {
				tm.t.Fatalf("the command ended without showing %q:\n%s", s, out)
			}
		case <-time.After(20 * time.Millisecond):
		}
	}
	tm.t.Fatalf("no %q within a minute:\n%s", s, tm.output())
	return ""
}

// answer types line and Enter.
func (tm *terminal) answer(line string) {
	tm.t.Helper()
	if _, err := io.WriteString(tm.pty, line+"\n"); err != nil {
		tm.t.Fatal(err)
	}
}

// wait returns the command's exit and its whole output.
func (tm *terminal) wait() (string, error) {
	tm.t.Helper()
	select {
	case err := <-tm.done:
		select {
		case <-tm.read:
		case <-time.After(5 * time.Second):
		}
		return tm.output(), err
	case <-time.After(time.Minute):
		tm.t.Fatalf("the command did not end within a minute:\n%s", tm.output())
		return "", nil
	}
}

// TestChannelAddMastodonAuthorizes walks the terminal dialogue of
// `remora channel add --adapter mastodon` without a token: app
// registration, the out-of-band code, and the token kept in a 0600 file.
// A mistyped code is refused with a clear error and adds no channel.
func TestChannelAddMastodonAuthorizes(t *testing.T) {
	fake := mastodontest.New(mastodontest.Options{})
	defer fake.Close()
	fake.AddAccount("alice")
	fake.AddAccount("bob")
	h := newHome(t, "alice")
	add := []string{"channel", "add", "social", "--adapter", "mastodon", "--set", "server=" + fake.URL, "--set", "accounts=[bob]"}
	authURL := regexp.MustCompile(`\s(http\S+/oauth/authorize\S*)`)

	t.Run("mistyped code", func(t *testing.T) {
		tm := h.terminal(t, nil, add...)
		tm.expect("paste the code")
		tm.answer("not-the-code")
		out, err := tm.wait()
		if err == nil || !strings.Contains(out, "exchange the code") {
			t.Fatalf("a wrong code: exit %v, output:\n%s", err, out)
		}
		if cfg, _ := os.ReadFile(filepath.Join(h.dir, "config.toml")); strings.Contains(string(cfg), "social") {
			t.Fatal("a failed authorization still added the channel")
		}
	})

	tm := h.terminal(t, nil, add...)
	out := tm.expect("paste the code")
	m := authURL.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no authorization address shown:\n%s", out)
	}
	code, err := fake.Authorize(m[1], "alice") // the person's browser step
	if err != nil {
		t.Fatal(err)
	}
	tm.answer(code)
	out, err = tm.wait()
	if err != nil || !strings.Contains(out, "authorized; the token is in") {
		t.Fatalf("authorization: exit %v, output:\n%s", err, out)
	}
	path := filepath.Join(h.dir, "secrets", "social.token")
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v, mode %v; want 0600", err, st.Mode().Perm())
	}
	token, _ := os.ReadFile(path)
	if strings.Contains(out, strings.TrimSpace(string(token))) {
		t.Fatal("the token was printed on the terminal")
	}
	if cfg, _ := os.ReadFile(filepath.Join(h.dir, "config.toml")); !strings.Contains(string(cfg), path) {
		t.Fatalf("config.toml does not name the token file:\n%s", cfg)
	}
	req, _ := http.NewRequest(http.MethodGet, fake.URL+"/api/v1/accounts/verify_credentials", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"alice"`) {
		t.Fatalf("the stored token does not act as alice: %d %s", resp.StatusCode, body)
	}
}

// TestChannelAddMatrixPicksRoomAndOpensBoard walks the terminal dialogue of
// `remora channel add --adapter matrix` without a room, on the real
// Dendrite: the account's rooms are listed, one is picked by number, and an
// admin is offered to let every member publish presence as room state (a
// new room's members may not: state needs 50, members have 0).
func TestChannelAddMatrixPicksRoomAndOpensBoard(t *testing.T) {
	if testing.Short() {
		t.Skip("matrix: integration test against Dendrite; skipped in -short mode")
	}
	v := testenv.Need(t, "matrix", "REMORA_MATRIX_URL", "REMORA_MATRIX_SECRET")
	hs := matrixtest.Homeserver{URL: v[0], Secret: v[1]}
	u := hs.Register(t)
	tag := matrixtest.RandomName("")
	alpha := matrixtest.CreateRoom(t, u, "alpha "+tag, nil, nil)
	beta := matrixtest.CreateRoom(t, u, "beta "+tag, nil, nil)
	h := newHome(t, "alice")
	tm := h.terminal(t, []string{"REMORA_TEST_MATRIX_PW=" + u.Password},
		"channel", "add", "room", "--adapter", "matrix", "--set", "homeserver="+hs.URL, "--set", "user="+string(u.ID),
		"--secret", "password=env:REMORA_TEST_MATRIX_PW")
	out := tm.expect("Room number")
	m := regexp.MustCompile(`(\d+)\s+beta ` + tag).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("room beta not listed:\n%s", out)
	}
	tm.answer(m[1])
	tm.expect("[y/N]")
	tm.answer("y")
	out, err := tm.wait()
	if err != nil || !strings.Contains(out, "room power levels updated") {
		t.Fatalf("channel add: exit %v, output:\n%s", err, out)
	}
	if strings.Contains(out, u.Password) {
		t.Fatal("the password was printed on the terminal")
	}
	if cfg, _ := os.ReadFile(filepath.Join(h.dir, "config.toml")); !strings.Contains(string(cfg), string(beta)) {
		t.Fatalf("config.toml does not name the picked room %s:\n%s", beta, cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	boardLevel := func(room id.RoomID) (int, bool) {
		var pl event.PowerLevelsEventContent
		if err := u.Client.StateEvent(ctx, room, event.StatePowerLevels, "", &pl); err != nil {
			t.Fatal(err)
		}
		lvl, ok := pl.Events[matrix.BoardType(string(room))]
		return lvl, ok
	}
	if lvl, ok := boardLevel(beta); !ok || lvl != 0 {
		t.Fatalf("picked room: board state level %d (set %v), want 0", lvl, ok)
	}
	if _, ok := boardLevel(alpha); ok {
		t.Fatal("the room not picked had its power levels changed")
	}

	// Run again on the same room: members may publish now, so no question.
	tm = h.terminal(t, []string{"REMORA_TEST_MATRIX_PW=" + u.Password},
		"channel", "add", "room2", "--adapter", "matrix", "--set", "homeserver="+hs.URL, "--set", "user="+string(u.ID),
		"--set", "room="+string(beta), "--secret", "password=env:REMORA_TEST_MATRIX_PW")
	out, err = tm.wait()
	if err != nil || strings.Contains(out, "[y/N]") {
		t.Fatalf("second add: exit %v, output:\n%s", err, out)
	}
}
