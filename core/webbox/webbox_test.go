package webbox

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/remora-p2p/remora/core/discovery"
	"github.com/remora-p2p/remora/testenv"
)

func randomName(prefix string) string {
	var b [6]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// key makes a board key as circle.EpochSecret.BoardKey does.
func key(c byte) string { return "r" + strings.Repeat(string(c), 32) }

// randomKey makes a fresh board key (the drop-box keeps one board for all
// test runs).
func randomKey() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	var b [32]byte
	rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[b[i]%32]
	}
	return "r" + string(b[:])
}

func mustNew(t *testing.T, o Options) *Box {
	t.Helper()
	b, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// roundTrip: two members publish to the same board and read each other's
// entries; an unchanged file reads as not modified (a 304); a republish
// under a new key drops the old one.
func roundTrip(t *testing.T, alice, bob *Box) {
	t.Helper()
	ctx := context.Background()
	ka, kb, kc := randomKey(), randomKey(), randomKey()
	big := bytes.Repeat([]byte{0xcd}, maxValue)
	if err := alice.Put(ctx, map[string][]byte{ka: []byte("sealed-a1")}); err != nil {
		t.Fatal(err)
	}
	if err := bob.Put(ctx, map[string][]byte{kb: big}); err != nil {
		t.Fatal(err)
	}
	got, err := alice.Get(ctx)
	if err != nil || string(got[ka]) != "sealed-a1" || !bytes.Equal(got[kb], big) {
		t.Fatalf("Get: %v, %d entries", err, len(got))
	}
	if _, err := alice.Get(ctx); !errors.Is(err, discovery.ErrNotModified) {
		t.Fatalf("unchanged Get: %v, want ErrNotModified (a conditional GET answered 304)", err)
	}
	if err := alice.Put(ctx, map[string][]byte{kc: []byte("sealed-a2")}); err != nil {
		t.Fatal(err)
	}
	got, err = bob.Get(ctx)
	if err != nil || string(got[kc]) != "sealed-a2" || got[ka] != nil || got[kb] == nil {
		t.Fatalf("after republish: %v, %d entries", err, len(got))
	}
}

// TestWebDAV: PUT to a real WebDAV server (Apache mod_dav), with basic
// auth, ETags and If-Match; concurrent writers lose nothing; a wrong
// password is refused with a fix.
func TestWebDAV(t *testing.T) {
	v := testenv.Need(t, "web", "REMORA_WEB_DAV_URL", "REMORA_WEB_DAV_USER", "REMORA_WEB_DAV_PASSWORD_FILE")
	o := Options{URL: v[0] + "/" + randomName("board-") + ".txt", Publish: PublishPut, Username: v[1], Password: readFile(t, v[2])}
	roundTrip(t, mustNew(t, o), mustNew(t, o))

	// Eight members write at once: If-Match and retries keep every line.
	o.URL = v[0] + "/" + randomName("busy-") + ".txt"
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			errs <- mustNew(t, o).Put(context.Background(), map[string][]byte{key(byte('a' + i)): fmt.Appendf(nil, "m%d", i)})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := mustNew(t, o).Get(context.Background())
	if err != nil || len(got) != 8 {
		t.Fatalf("after 8 concurrent writers: %d entries, %v", len(got), err)
	}

	bad := o
	bad.Password = "not-the-password"
	err = mustNew(t, bad).Put(context.Background(), map[string][]byte{key('z'): []byte("x")})
	if err == nil || !strings.Contains(discovery.Fix(err, ""), "password") {
		t.Fatalf("wrong password: %v (fix %q)", err, discovery.Fix(err, ""))
	}
}

// TestCommand: the file is published by a command (here curl uploading to
// the real WebDAV server, as a pages-repository push would) and read back.
func TestCommand(t *testing.T) {
	v := testenv.Need(t, "web", "REMORA_WEB_DAV_URL", "REMORA_WEB_DAV_USER", "REMORA_WEB_DAV_PASSWORD_FILE")
	u := v[0] + "/" + randomName("cmd-") + ".txt"
	cmd := fmt.Sprintf(`curl -sSf -u %s:%s -T "$REMORA_BOARD_FILE" %s`, v[1], readFile(t, v[2]), u)
	roundTrip(t, mustNew(t, Options{URL: u, Publish: PublishCommand, Command: cmd}), mustNew(t, Options{URL: u, Publish: PublishCommand, Command: cmd}))
	err := mustNew(t, Options{URL: u, Publish: PublishCommand, Command: "echo no such host >&2; exit 3"}).Put(context.Background(), map[string][]byte{key('a'): []byte("x")})
	if err == nil || !strings.Contains(err.Error(), "no such host") {
		t.Fatalf("failing command: %v", err)
	}
}

// TestDropbox: the PHP drop-box script from this repository under `php -S`.
func TestDropbox(t *testing.T) {
	v := testenv.Need(t, "web", "REMORA_WEB_DROPBOX_URL", "REMORA_WEB_DROPBOX_TOKEN_FILE")
	o := Options{URL: v[0], Publish: PublishDropbox, Token: readFile(t, v[1])}
	roundTrip(t, mustNew(t, o), mustNew(t, o))

	bad := o
	bad.Token = "wrong"
	err := mustNew(t, bad).Put(context.Background(), map[string][]byte{randomKey(): []byte("x")})
	if err == nil || !strings.Contains(discovery.Fix(err, ""), "token") {
		t.Fatalf("wrong token: %v (fix %q)", err, discovery.Fix(err, ""))
	}
	// The script stores board entries and nothing else.
	for _, form := range []string{"key=../../etc/passwd&value=AAAA", "key=" + randomKey() + "&value=%3Cscript%3E"} {
		resp, err := http.Post(v[0], "application/x-www-form-urlencoded", strings.NewReader(form+"&token="+o.Token))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("POST %s: %s, want 400", form, resp.Status)
		}
	}
}

func TestParse(t *testing.T) {
	body := "remora-board v1\n" + key('a') + " 100 AAAA\n" + key('a') + " 200 BBBB\njunk\n" + key('b') + " x CCCC\n"
	got, err := parse([]byte(body))
	if err != nil || len(got) != 1 || got[key('a')].value != "BBBB" {
		t.Fatalf("parse: %v %+v", err, got)
	}
	for _, bad := range []string{"", "<html>not a board</html>\n"} {
		if _, err := parse([]byte(bad)); err == nil {
			t.Errorf("parse(%q) accepted", bad)
		}
	}
	if _, err := New(Options{URL: "ftp://x/y"}); err == nil {
		t.Error("ftp URL accepted")
	}
	if _, err := New(Options{URL: "https://x/y", Publish: PublishCommand}); err == nil {
		t.Error("command mode without a command accepted")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("remora-board v1\n" + key('a') + " 1 AAAA\n"))
	f.Add([]byte("remora-board v1\n\n\n x y z w\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		lines, err := parse(b)
		if err != nil {
			return
		}
		again, err := parse(render(lines))
		if err != nil || len(again) != len(lines) {
			t.Fatalf("render/parse changed %d lines to %d (%v)", len(lines), len(again), err)
		}
	})
}
