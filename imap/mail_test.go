package imap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/channeltest"
)

// inject sends raw by plain SMTP (port 10025, no auth), as any outsider can.
func (m mailEnv) inject(t testing.TB, from, to string, raw []byte) {
	t.Helper()
	c, err := smtp.Dial(m.smtp) // no STARTTLS: an outsider's server
	if err == nil {
		err = c.SendMail(from, []string{to}, bytes.NewReader(raw))
		c.Close()
	}
	if err != nil {
		t.Fatalf("inject mail to %s: %v", to, err)
	}
}

// waitCount waits until user's folder holds at least n mails.
func (m mailEnv) waitCount(t testing.TB, user, folder string, n uint32) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := m.count(t, user, folder)
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/%s has %d mails, want %d", user, folder, got, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func item(data string, to ...string) sdk.PublishItem {
	return sdk.PublishItem{Data: []byte(data), IdempotencyKey: randName("key"), To: to}
}

// TestBadInput puts ordinary mail, spam, malformed and forged mails, a huge
// mail and a well-formed mail from a non-member next to a real list mail in
// a member's INBOX: only the real item is delivered, the rest is counted and
// left untouched.
func TestBadInput(t *testing.T) {
	env := needMail(t)
	env.empty(t, "carol", "INBOX")
	big := strings.Repeat("spam spam spam\r\n", 12000) // 192 KB > max_mail_bytes + 64 KiB
	bad := []struct{ name, mail string }{
		{"ordinary", "From: bob@example.test\r\nTo: carol@example.test\r\nSubject: lunch?\r\n\r\nat noon\r\n"},
		{"spam", "From: win@spam.test\r\nTo: carol@example.test\r\nSubject: You won\r\nContent-Type: multipart/alternative; boundary=\"zz\"\r\n\r\n--zz\r\nContent-Type: text/html\r\n\r\n<b>$$$</b>\r\n--zz--\r\n"},
		{"malformed MIME", "From: x@spam.test\r\nTo: carol@example.test\r\n" + markedHead("k1") + "Content-Type: multipart/mixed; boundary=\"x\"\r\n\r\n--x\r\nContent-Type: text/plain\r\n"},
		{"marked, no block", "From: x@spam.test\r\nTo: carol@example.test\r\n" + markedHead("k1", "k2") + "\r\nabc\r\n.\r\n"},
		{"huge", "From: x@spam.test\r\nTo: carol@example.test\r\n" + markedHead("k1") + "\r\n" + big + ".\r\n"},
		{"non-member, not through the list", string(mustBuild(t, []string{randName("nm")}, "forged-envelope"))},
		{"format 2 (a header of its own)", "From: x@spam.test\r\nTo: carol@example.test\r\nX-Sync: 2\r\nX-Sync-Items: 1\r\n\r\nabc\r\n.\r\n"},
	}
	for _, b := range bad {
		env.inject(t, "outsider@example.test", "carol@example.test", []byte(b.mail))
	}
	env.waitCount(t, "carol", "INBOX", uint32(len(bad)))

	list := map[string]any{"list_address": "circle@example.test", "max_mail_bytes": 64 << 10, "smtp": env.submission}
	alice := open(t, env.config(ModeList, "alice", list), "alice")
	carol := open(t, env.config(ModeList, "carol", list), "carol")
	channeltest.Publish(t, alice, item("real-item-1"), item("real-item-2"))

	got, err := collect(t, carol, nil, 2, 30*time.Second)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	var items []string
	empty := 0
	for _, d := range got {
		if len(d.Data) > 0 {
			items = append(items, string(d.Data))
		} else {
			empty++
		}
		if len(d.Cursor) == 0 {
			t.Errorf("delivery %s without a cursor", d.ID)
		}
	}
	if strings.Join(items, ",") != "real-item-1,real-item-2" {
		t.Errorf("delivered %q, want only the two real items", items)
	}
	if empty > 1 {
		t.Errorf("%d cursor-only deliveries for one run of foreign mail, want at most 1", empty)
	}
	h := carol.(sdk.Healther).Health(context.Background())
	want := map[string]int64{reasonForeign: 3, reasonMalformed: 2, reasonTooLarge: 1, reasonNotList: 1}
	for k, v := range want {
		if h.Counters[k] != v {
			t.Errorf("counter %s = %d, want %d (all: %v)", k, h.Counters[k], v, h.Counters)
		}
	}
	if h.State != sdk.HealthOK {
		t.Errorf("health %s: %s", h.State, h.Message)
	}
	// Untouched: still there, still unread.
	c := env.admin(t, "carol")
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	data, err := c.UIDSearch(unseen(), nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(data.AllUIDs()); n < len(bad)+1 {
		t.Errorf("%d unread mails after the subscription, want at least %d: the adapter must not mark mail read", n, len(bad)+1)
	}
}

// dovecotPIDs returns the pid of the running dovecot master.
func dovecotPID(t testing.TB, env mailEnv) int {
	t.Helper()
	b, err := os.ReadFile(env.pidFile)
	if err != nil {
		t.Fatalf("dovecot pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("dovecot pid: %v", err)
	}
	return pid
}

// stopDovecot stops the dovecot master by pid and waits until it is gone.
func stopDovecot(t testing.TB, env mailEnv) {
	t.Helper()
	pid := dovecotPID(t, env)
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatalf("stop dovecot %d: %v", pid, err)
	}
	for i := 0; i < 200 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(50 * time.Millisecond)
	}
}

// startDovecot starts it again with the same config and records its pid
// where svc-mail.sh keeps it.
func startDovecot(t testing.TB, env mailEnv) {
	t.Helper()
	old, _ := os.ReadFile(env.pidFile)
	// std fds stay /dev/null: dovecot keeps inherited ones open after it
	// daemonizes, and a pipe would never see EOF.
	cmd := exec.Command("dovecot", "-c", env.dovecotConf)
	if err := cmd.Run(); err != nil {
		t.Fatalf("start dovecot: %v (see %s)", err, filepath.Join(filepath.Dir(env.dovecotConf), "dovecot.log"))
	}
	master := filepath.Join(filepath.Dir(env.dovecotConf), "run", "master.pid")
	for range 100 {
		if b, err := os.ReadFile(master); err == nil && len(bytes.TrimSpace(b)) > 0 && !bytes.Equal(bytes.TrimSpace(b), bytes.TrimSpace(old)) {
			if err := os.WriteFile(env.pidFile, b, 0o644); err != nil {
				t.Fatal(err)
			}
			warmSubmission(t, env)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("dovecot did not write its pid")
}

// warmSubmission waits until SMTP AUTH on the submission port works again:
// postfix's smtpd processes lose their connection to dovecot's auth socket
// when dovecot restarts, and each answers its next AUTH with a 454.
func warmSubmission(t testing.TB, env mailEnv) {
	t.Helper()
	// "postfix reload": the master replaces its idle smtpd processes
	if b, err := os.ReadFile(filepath.Join(filepath.Dir(env.pidFile), "postfix.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			syscall.Kill(pid, syscall.SIGHUP)
		}
	}
	time.Sleep(500 * time.Millisecond)
	tc, err := Config{CAFile: env.ca}.tlsConfig(env.submission)
	if err != nil {
		t.Fatal(err)
	}
	ok := 0
	for i := 0; i < 100 && ok < 5; i++ {
		c, err := smtp.DialStartTLS(env.submission, tc)
		if err == nil {
			err = c.Auth(sasl.NewPlainClient("", "alice", "alice-pw"))
			c.Close()
		}
		if err != nil {
			ok = 0
			time.Sleep(100 * time.Millisecond)
			continue
		}
		ok++
	}
}

// TestServerRestartMidIdle stops dovecot while a subscription idles, sends
// mail while it is down (postfix queues it), starts dovecot again: the
// subscription reconnects and delivers every item exactly once.
func TestServerRestartMidIdle(t *testing.T) {
	env := needMail(t)
	folder := randName("rs")
	direct := map[string]any{"folder": folder}
	// alice sends through the MTA port without SMTP AUTH: submission
	// authenticates against dovecot, which is down for part of the test.
	alice := open(t, env.config(ModeDirect, "alice", map[string]any{"folder": folder, "smtp": env.smtp, "smtp_username": "-"}), "alice")
	bob := open(t, env.config(ModeDirect, "bob", direct), "bob")
	to := "bob+" + folder + "@" + env.domain

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	got := make(chan sdk.Delivery, 100)
	done := make(chan error, 1)
	go func() {
		done <- bob.Subscribe(ctx, sdk.SubscribeRequest{}, sdk.SinkFunc(func(_ context.Context, d sdk.Delivery) error {
			got <- d
			return nil
		}))
	}()
	want := map[string]int{}
	send := func(s string) {
		channeltest.Publish(t, alice, item(s, to))
		want[s] = 0
	}
	wait := func(n int) {
		t.Helper()
		for seen := 0; seen < n; {
			select {
			case d := <-got:
				if _, ok := want[string(d.Data)]; ok {
					want[string(d.Data)]++
					seen++
				}
			case err := <-done:
				t.Fatalf("subscription ended: %v", err)
			case <-ctx.Done():
				t.Fatalf("timed out: %v", want)
			}
		}
	}
	send("before-1")
	wait(1)
	time.Sleep(500 * time.Millisecond) // idling now
	stopDovecot(t, env)
	restarted := false
	defer func() {
		if !restarted {
			startDovecot(t, env)
		}
	}()
	send("during-1")
	send("during-2")
	// doctor sees the outage
	deadline := time.Now().Add(time.Minute) // a loaded machine notices the dropped IDLE late
	for h := bob.(sdk.Healther).Health(ctx); h.State != sdk.HealthDegraded; h = bob.(sdk.Healther).Health(ctx) {
		if time.Now().After(deadline) {
			t.Fatalf("health %s %q while the IMAP server is down, want degraded", h.State, h.Message)
		}
		time.Sleep(100 * time.Millisecond)
	}
	startDovecot(t, env)
	restarted = true
	send("after-1")
	wait(3)
	time.Sleep(2 * time.Second) // duplicates would show up now
	for len(got) > 0 {
		d := <-got
		if _, ok := want[string(d.Data)]; ok {
			want[string(d.Data)]++
		}
	}
	for k, n := range want {
		if n != 1 {
			t.Errorf("%s delivered %d times, want 1", k, n)
		}
	}
	if h := bob.(sdk.Healther).Health(ctx); h.State != sdk.HealthOK {
		t.Errorf("health %s %q after the server came back, want ok", h.State, h.Message)
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("subscribe returned %v", err)
	}
}

func TestAuthErrors(t *testing.T) {
	env := needMail(t)
	ctx := context.Background()
	tests := []struct {
		name    string
		cfg     map[string]any
		secrets map[string]string
		advice  string
	}{
		{"wrong IMAP password", nil, map[string]string{"password": "wrong"}, "password"},
		{"wrong SMTP password", nil, map[string]string{"password": "alice-pw", "smtp_password": "wrong"}, "SMTP login rejected"},
		{"unknown user", map[string]any{"username": "nobody"}, map[string]string{"password": "x"}, "username"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New().Configure(ctx, sdk.ConfigureRequest{Config: env.config(ModeList, "alice", merge(map[string]any{"list_address": "circle@example.test"}, tt.cfg)), Secrets: tt.secrets, StateDir: t.TempDir()})
			if !errors.Is(err, sdk.ErrAuthFailed) {
				t.Fatalf("got %v, want an auth failed error", err)
			}
			if !strings.Contains(err.Error(), tt.advice) || strings.Contains(err.Error(), "wrong") {
				t.Errorf("message %q: want advice mentioning %q and no password", err, tt.advice)
			}
		})
	}
}

func merge(a, b map[string]any) map[string]any {
	for k, v := range b {
		a[k] = v
	}
	return a
}

// TestTLS covers STARTTLS and implicit TLS for IMAP and SMTP with the test
// CA, and the errors a user meets with the wrong CA, a wrong name, the wrong
// TLS mode, and no TLS at all.
func TestTLS(t *testing.T) {
	env := needMail(t)
	base := map[string]any{"list_address": "circle@example.test"}
	tests := []struct {
		name   string
		cfg    map[string]any
		code   sdk.Code // 0: works
		advice string
	}{
		{"STARTTLS IMAP and submission", nil, 0, ""},
		{"implicit TLS IMAP and SMTPS", map[string]any{"imap": env.imaps, "imap_tls": TLSImplicit, "smtp": env.smtps, "smtp_tls": TLSImplicit}, 0, ""},
		{"plaintext with insecure_plaintext", map[string]any{"imap_tls": TLSNone, "smtp": env.smtp, "smtp_tls": TLSNone, "smtp_username": "-", "insecure_plaintext": true}, 0, ""},
		{"wrong CA", map[string]any{"ca_file": env.otherCA}, sdk.CodeBadConfig, "ca_file"},
		{"system roots only", map[string]any{"ca_file": nil}, sdk.CodeBadConfig, "not trusted"},
		{"wrong server name", map[string]any{"tls_server_name": "imap.elsewhere.test"}, sdk.CodeBadConfig, "tls_server_name"},
		{"implicit TLS on the STARTTLS port", map[string]any{"imap_tls": TLSImplicit}, sdk.CodeBadConfig, "starttls"},
		{"wrong CA on SMTPS", map[string]any{"smtp": env.smtps, "smtp_tls": TLSImplicit, "ca_file": env.otherCA, "imap_tls": TLSNone, "insecure_plaintext": true}, sdk.CodeBadConfig, "ca_file"},
		{"submission refuses plaintext", map[string]any{"smtp_tls": TLSNone, "insecure_plaintext": true}, sdk.CodeAuthFailed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := env.config(ModeList, "alice", merge(merge(map[string]any{}, base), tt.cfg))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			ch, err := New().Configure(ctx, sdk.ConfigureRequest{Config: cfg, Secrets: password("alice"), StateDir: t.TempDir()})
			if tt.code == 0 {
				if err != nil {
					t.Fatalf("configure: %v", err)
				}
				defer ch.Close()
				channeltest.Publish(t, ch, item("tls-check"))
				return
			}
			if sdk.CodeOf(err) != tt.code {
				t.Fatalf("got %v (code %s), want code %s", err, sdk.CodeOf(err), tt.code)
			}
			if !strings.Contains(err.Error(), tt.advice) {
				t.Errorf("message %q lacks advice %q", err, tt.advice)
			}
		})
	}
}

// TestConsumed: a subscriber deletes or files away the mails it consumed.
func TestConsumed(t *testing.T) {
	env := needMail(t)
	for _, mode := range []string{ConsumedDelete, ConsumedMove} {
		t.Run(mode, func(t *testing.T) {
			folder := randName("cs")
			done := folder + "-done"
			to := "bob+" + folder + "@" + env.domain
			alice := open(t, env.config(ModeDirect, "alice", map[string]any{"folder": folder}), "alice")
			bob := open(t, env.config(ModeDirect, "bob", map[string]any{"folder": folder, "consumed": mode, "consumed_folder": done}), "bob")
			if got := bob.Capabilities().Delete; got != sdk.DeleteOwn {
				t.Errorf("Delete capability %q, want own", got)
			}
			channeltest.Publish(t, alice, item("c1", to), item("c2", to), item("c3", to))
			channeltest.Publish(t, alice, item("c4", to))
			got, err := collect(t, bob, nil, 4, 30*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, d := range got {
				if len(d.Data) > 0 {
					ids = append(ids, d.ID)
				}
			}
			if env.count(t, "bob", folder) != 2 {
				t.Fatalf("want 2 mails (a batch of 3 and one) in %s", folder)
			}
			// Deleting part of the batch mail rewrites it without that item.
			del := bob.(sdk.Deleter)
			resp, err := del.Delete(context.Background(), sdk.DeleteRequest{IDs: ids[:1]})
			if err != nil || resp.Errors[0] != nil {
				t.Fatalf("delete: %v %v", err, resp.Errors)
			}
			again, err := collect(t, open(t, env.config(ModeDirect, "bob", map[string]any{"folder": folder}), "bob"), nil, 3, 30*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range again {
				if string(d.Data) == "c1" {
					t.Error("deleted item c1 delivered again")
				}
			}
			resp, err = del.Delete(context.Background(), sdk.DeleteRequest{IDs: ids})
			if err != nil {
				t.Fatal(err)
			}
			for i, e := range resp.Errors {
				if e != nil {
					t.Errorf("delete %s: %v", ids[i], e)
				}
			}
			if n := env.count(t, "bob", folder); n != 0 {
				t.Errorf("%d mails left in %s after deleting every item", n, folder)
			}
			if mode == ConsumedMove {
				if n := env.count(t, "bob", done); n != 2 {
					t.Errorf("%d mails in %s, want the 2 consumed ones", n, done)
				}
			}
		})
	}
}

// TestExtraFolder finds our mail a filter put into a Junk-like folder.
func TestExtraFolder(t *testing.T) {
	env := needMail(t)
	folder, junk := randName("ef"), randName("junk")
	env.empty(t, "bob", junk)
	bob := open(t, env.config(ModeDirect, "bob", map[string]any{"folder": folder, "extra_folders": []string{junk}, "poll_interval": "1s"}), "bob")
	raw := mustBuild(t, []string{randName("j")}, "from-junk")
	env.appendRaw(t, "bob", junk, raw, time.Now())
	got, err := collect(t, bob, nil, 1, 20*time.Second)
	if err != nil || len(got) == 0 || string(got[len(got)-1].Data) != "from-junk" {
		t.Fatalf("got %v %v, want the item from %s", got, err, junk)
	}
	// While idling on the main folder, a new Junk mail is found by polling.
	cur := got[len(got)-1].Cursor
	env.appendRaw(t, "bob", junk, mustBuild(t, []string{randName("j")}, "later-junk"), time.Now())
	got, err = collect(t, bob, cur, 1, 20*time.Second)
	if err != nil || len(got) != 1 || string(got[0].Data) != "later-junk" {
		t.Fatalf("got %v %v, want exactly later-junk", got, err)
	}
}

// TestQuota: a full mailbox is an error that says so.
func TestQuota(t *testing.T) {
	env := needMail(t)
	folder := randName("q")
	ch := open(t, env.config(ModeShared, "tiny", map[string]any{"folder": folder}), "tiny")
	res, err := ch.Publish(context.Background(), sdk.PublishRequest{Items: []sdk.PublishItem{item(strings.Repeat("Q", 100<<10))}})
	if err != nil {
		t.Fatal(err)
	}
	if e := res.Results[0].Err; !errors.Is(e, sdk.ErrNeedsUserAction) || !strings.Contains(e.Error(), "quota") {
		t.Fatalf("got %v, want a needs-user-action error about the quota", e)
	}
}

// TestCursorInvalidAfterUIDValidity: a rebuilt folder is reported, not
// silently re-read.
func TestCursorInvalidAfterUIDValidity(t *testing.T) {
	env := needMail(t)
	folder := randName("uv")
	ch := open(t, env.config(ModeShared, "carol", map[string]any{"folder": folder}), "carol")
	channeltest.Publish(t, ch, item("uv-1"))
	got, err := collect(t, ch, nil, 1, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.newUIDValidity(context.Background(), "carol", folder); err != nil {
		t.Fatal(err)
	}
	_, err = collect(t, ch, got[len(got)-1].Cursor, 1, 20*time.Second)
	if !errors.Is(err, sdk.ErrCursorInvalid) || !strings.Contains(err.Error(), folder) {
		t.Fatalf("got %v, want cursor invalid naming the folder", err)
	}
}

func unseen() *imap.SearchCriteria { return &imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}} }

// TestIdleReissued: with a short idle_restart the subscription ends and
// re-issues IDLE many times and still sees every new mail at once; with
// no_idle it polls instead.
func TestIdleReissued(t *testing.T) {
	for name, cfg := range map[string]map[string]any{
		"idle":    {"idle_restart": "200ms"},
		"polling": {"no_idle": true, "poll_interval": "300ms"},
	} {
		t.Run(name, func(t *testing.T) { testNewMailSeen(t, cfg) })
	}
}

func testNewMailSeen(t *testing.T, cfg map[string]any) {
	env := needMail(t)
	cfg["folder"] = randName("ir")
	pub := open(t, env.config(ModeShared, "carol", cfg), "carol")
	sub := open(t, env.config(ModeShared, "carol", cfg), "carol")
	if caps := sub.Capabilities(); caps.Push == (cfg["no_idle"] == true) || (!caps.Push && caps.PollInterval <= 0) {
		t.Errorf("capabilities %+v for config %v", caps, cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := make(chan string, 10)
	done := make(chan error, 1)
	go func() {
		done <- sub.Subscribe(ctx, sdk.SubscribeRequest{}, sdk.SinkFunc(func(_ context.Context, d sdk.Delivery) error {
			got <- string(d.Data)
			return nil
		}))
	}()
	for i := range 3 {
		time.Sleep(700 * time.Millisecond) // several IDLE cycles
		want := fmt.Sprintf("after-idle-%d", i)
		channeltest.Publish(t, pub, item(want))
		select {
		case d := <-got:
			if d != want {
				t.Fatalf("got %q, want %q", d, want)
			}
		case err := <-done:
			t.Fatalf("subscription ended: %v", err)
		case <-ctx.Done():
			t.Fatalf("%s not delivered", want)
		}
	}
	cancel()
	<-done
}

// TestDirectAddressing: each item reaches exactly the addresses in its To,
// items with the same recipients share a mail.
func TestDirectAddressing(t *testing.T) {
	env := needMail(t)
	folder := randName("da")
	cfg := map[string]any{"folder": folder}
	alice := open(t, env.config(ModeDirect, "alice", cfg), "alice")
	bobAddr, carolAddr := "bob+"+folder+"@"+env.domain, "carol+"+folder+"@"+env.domain
	channeltest.Publish(t, alice,
		item("to-bob-1", bobAddr), item("to-both", bobAddr, carolAddr), item("to-carol", carolAddr),
		item("to-bob-2", bobAddr), item("to-both-again", carolAddr, bobAddr))
	for user, want := range map[string][]string{
		"bob":   {"to-bob-1", "to-bob-2", "to-both", "to-both-again"},
		"carol": {"to-both", "to-both-again", "to-carol"},
	} {
		ch := open(t, env.config(ModeDirect, user, cfg), user)
		got, err := collect(t, ch, nil, len(want), 20*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		var data []string
		for _, d := range got {
			if len(d.Data) > 0 {
				data = append(data, string(d.Data))
			}
		}
		slices.Sort(data)
		if !slices.Equal(data, want) {
			t.Errorf("%s got %q, want %q", user, data, want)
		}
		// bob: one mail for his own items, one for the shared ones
		if n := env.count(t, user, folder); n != 2 {
			t.Errorf("%s has %d mails, want 2 (items batched per recipient set)", user, n)
		}
	}
}
