package main

import (
	"context"
	"io/fs"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/remora-p2p/remora/testenv"
)

var safetyCodeRE = regexp.MustCompile(`safety code: (\d{3} \d{3} \d{3} \d{3})`)

// TestMembershipEndToEnd is the "done when", with the real binary:
// invite, join waits, `pending` shows the request with the safety code the
// joiner printed, approve, join completes, `members` lists the new device,
// remove, and the removed device reads nothing sent after its removal; it
// is told it is no longer a member when it sends, and keeps what it had.
func TestMembershipEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs daemons")
	}
	a, b, c := newHome(t, "alice"), newHome(t, "bob"), newHome(t, "carol")
	shared := t.TempDir()
	for _, h := range []*home{a, b, c} {
		addFolderChannel(h, shared)
		h.start()
	}
	a.ok("circle", "create", "friends")
	// carol is handed an in-person invite: pre-approved.
	if out := c.ok("join", inviteCode(a.ok("invite", "--in-person")), "--timeout", "60s"); !strings.Contains(out, "joined") {
		t.Fatalf("carol's in-person join: %s", out)
	}

	// bob gets an ordinary invite: his join waits for alice.
	inv := a.ok("invite")
	if !strings.Contains(inv, "remora circle approve") {
		t.Fatalf("the invite does not say what happens next:\n%s", inv)
	}
	out := &testenv.Buffer{}
	join := exec.Command(bin, "--home", b.dir, "join", inviteCode(inv), "--timeout", "120s")
	join.Stdout, join.Stderr = out, out
	if err := join.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- join.Wait() }()
	t.Cleanup(func() {
		if join.ProcessState == nil {
			join.Process.Kill()
			<-done
		}
	})
	var code string
	testenv.WaitFor(t, "bob's join printing its safety code", 30*time.Second, func() bool {
		m := safetyCodeRE.FindStringSubmatch(out.String())
		if m != nil {
			code = m[1]
		}
		return m != nil
	})
	var pending string
	testenv.WaitFor(t, "alice's pending list showing bob", 30*time.Second, func() bool {
		pending = a.ok("circle", "pending")
		return strings.Contains(pending, "bob")
	})
	if !strings.Contains(pending, code) {
		t.Fatalf("pending shows another safety code than bob's %s:\n%s", code, pending)
	}
	select {
	case err := <-done:
		t.Fatalf("bob's join ended before approval (%v):\n%s", err, out.String())
	default:
	}
	if doc, _ := a.remora("doctor"); !strings.Contains(doc, "waiting for approval") || !strings.Contains(doc, code) {
		t.Fatalf("doctor does not show the pending request:\n%s", doc)
	}
	if msg := a.fails("circle", "approve", "mallory"); !strings.Contains(msg, "pending: bob") {
		t.Fatalf("approving an unknown name does not list the pending ones:\n%s", msg)
	}
	a.ok("circle", "approve", "bob")
	select {
	case err := <-done:
		if err != nil || !strings.Contains(out.String(), "joined") {
			t.Fatalf("bob's join after approval: %v\n%s", err, out.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("bob's join did not complete after approval:\n%s", out.String())
	}
	bobID := peerIDOf(t, b)
	if members := a.ok("circle", "members"); !strings.Contains(members, bobID) || !strings.Contains(members, "bob") {
		t.Fatalf("members does not list bob's device %s:\n%s", bobID, members)
	}

	a.ok("send", "before the removal")
	testenv.WaitFor(t, "bob got the message sent before his removal", 60*time.Second, func() bool { return hasText(t, b, "before the removal") })

	a.ok("circle", "remove", "bob")
	testenv.WaitFor(t, "carol's roster without bob", 60*time.Second, func() bool {
		return !strings.Contains(c.ok("circle", "members"), bobID)
	})
	a.ok("send", "after the removal, from alice")
	c.ok("send", "after the removal, from carol")
	testenv.WaitFor(t, "carol got alice's message", 60*time.Second, func() bool { return hasText(t, c, "after the removal, from alice") })
	testenv.WaitFor(t, "alice got carol's message", 60*time.Second, func() bool { return hasText(t, a, "after the removal, from carol") })
	var refusal string
	testenv.WaitFor(t, "bob told he is no longer a member", 60*time.Second, func() bool {
		var err error
		refusal, err = b.remora("send", "am I still in?")
		return err != nil && strings.Contains(refusal, "no longer a member")
	})
	// Everything alice and carol posted is in the folder: wait until bob's
	// daemon has read all of it, then look at his inbox.
	testenv.WaitFor(t, "bob's daemon read the whole folder", 60*time.Second, func() bool {
		chs, err := b.client().Channels(context.Background())
		return err == nil && len(chs) == 1 && chs[0].Counters["received"] >= int64(filesIn(filepath.Join(shared, "log")))
	})
	got := allMessages(t, b)
	for _, m := range got {
		if strings.HasPrefix(m.Text, "after the removal") {
			t.Fatalf("the removed device read %q", m.Text)
		}
	}
	if !hasText(t, b, "before the removal") {
		t.Fatal("the removed device lost a message it had received")
	}
	if listen := b.ok("listen", "--follow=false"); !strings.Contains(listen, "before the removal") {
		t.Fatalf("bob's listen:\n%s", listen)
	}

	// The removed device replays the invite it joined with: the inviter
	// answers that it is used, and the CLI says so.
	if msg := b.fails("join", inviteCode(inv), "--timeout", "60s"); !strings.Contains(msg, "already used") {
		t.Fatalf("joining again with a used invite:\n%s", msg)
	}
	// A stale invite: refused at once, saying it expired.
	stale := inviteCode(a.ok("invite", "--ttl", "1s"))
	made := time.Now()
	testenv.WaitFor(t, "the one-second invite expiring", 10*time.Second, func() bool { return time.Since(made) > 2*time.Second })
	if msg := b.fails("join", stale, "--timeout", "30s"); !strings.Contains(msg, "expired") {
		t.Fatalf("joining with an expired invite:\n%s", msg)
	}
}

func hasText(t *testing.T, h *home, text string) bool {
	for _, m := range allMessages(t, h) {
		if m.Text == text {
			return true
		}
	}
	return false
}

func peerIDOf(t *testing.T, h *home) string {
	t.Helper()
	st, err := h.client().Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.PeerID
}

func filesIn(dir string) int {
	n := 0
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasPrefix(d.Name(), ".") {
			n++
		}
		return nil
	})
	return n
}
