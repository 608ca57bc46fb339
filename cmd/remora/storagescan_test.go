package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/mastodon/mastodontest"
	"github.com/remora-p2p/remora/testenv"
	"github.com/remora-p2p/remora/testenv/gotosocial"
)

// needle is one thing no server may store.
type needle struct {
	what string
	b    []byte
}

// finding is a needle found in a server's storage.
type finding struct{ where, what string }

// scanner looks for needles in what one server stored.
type scanner struct {
	needles []needle
	found   []finding
	// control is a string the storage must hold (the service's own
	// account name, the room ID): found proves the scan read the right
	// data, decoded.
	control    []byte
	controlHit bool
	bytes      int64
}

func (s *scanner) scan(where string, data []byte) {
	s.bytes += int64(len(data))
	lower := bytes.ToLower(data)
	for _, n := range s.needles {
		if bytes.Contains(data, n.b) || bytes.Contains(lower, bytes.ToLower(n.b)) {
			s.found = append(s.found, finding{where, n.what})
		}
	}
	if len(s.control) > 0 && bytes.Contains(data, s.control) {
		s.controlHit = true
	}
}

// scanTree scans every regular file below root; mail files (in a Maildir's
// cur/ or new/) are also scanned decoded: each header and each part's body
// after its transfer encoding and charset.
func (s *scanner) scanTree(t testing.TB, root string) {
	t.Helper()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // a file that went away
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		s.scan(rel, b)
		if dir := filepath.Base(filepath.Dir(path)); dir == "cur" || dir == "new" {
			s.scanMail(rel, b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (s *scanner) scanMail(where string, raw []byte) {
	// An unknown charset is an error with a usable entity; only no
	// entity at all is not a mail (the raw scan covered the file).
	e, _ := message.Read(bytes.NewReader(raw))
	if e == nil {
		return
	}
	dec := new(mime.WordDecoder)
	e.Walk(func(path []int, part *message.Entity, err error) error {
		if part == nil {
			return nil
		}
		fields := part.Header.Fields()
		for fields.Next() {
			v, derr := dec.DecodeHeader(fields.Value())
			if derr != nil {
				v = fields.Value()
			}
			s.scan(where+" header "+fields.Key(), []byte(v))
		}
		if body, err := io.ReadAll(part.Body); err == nil {
			s.scan(where+" decoded body", body)
		}
		return nil
	})
}

// scanGit scans every object of a bare repository, decompressed.
func (s *scanner) scanGit(t testing.TB, repo string) int {
	t.Helper()
	out, err := exec.Command("git", "--git-dir="+repo, "cat-file", "--batch-all-objects", "--batch").Output()
	if err != nil {
		t.Fatalf("git cat-file: %v", err)
	}
	s.scan("git objects", out)
	s.scanTree(t, repo) // refs, logs, packs as stored
	return bytes.Count(out, []byte("\n"))
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// TestServerStorageScan (issue #16): three daemons talk over every kind of
// channel — a git repository (git daemon), a mlmmj list (Postfix and
// Dovecot), a Dendrite room, a Mastodon account on GoToSocial and on the
// fake, and a shared folder — including messages sent while one member is
// offline, so every channel carries messages, presence records and acks.
// Then what each server stored (every file of the maildirs and the mail
// queue and logs, decoded too; Dendrite's databases; every git object,
// decompressed; GoToSocial's database and storage; the fake's statuses;
// the folder) holds no peer ID (as text or bytes), member name, listen
// address, circle name or message text. Each scan must find a control
// string (the service's own account or room name), which proves it read
// the server's data. Mail, Matrix and git are private instances: only
// this test's traffic is in them.
func TestServerStorageScan(t *testing.T) {
	if testing.Short() {
		t.Skip("runs daemons and private servers")
	}
	gts := gotosocial.Need(t)
	gtsConfig, _ := testenv.Lookup("REMORA_GTS_CONFIG")
	mail, mx, git := testenv.StartPrivate(t, "mail"), testenv.StartPrivate(t, "matrix"), testenv.StartPrivate(t, "git")
	fake := mastodontest.New(mastodontest.Options{})
	defer fake.Close()

	sfx := randomHex(4)
	circleName := "circle" + sfx
	folder := t.TempDir()
	remote := newGitRepo(t, git.Get("REMORA_GIT_ROOT"), git.Get("REMORA_GIT_DAEMON_URL"), "scan")
	repo := filepath.Join(git.Get("REMORA_GIT_ROOT"), "scan.git") // scanned at the end
	room := newMatrixRoom(t, mx.Get("REMORA_MATRIX_URL"), mx.Get("REMORA_MATRIX_SECRET"), 3, "r"+sfx)
	gtsAccts := gts.NewAccounts(t, "scana", "scanb", "scanc")
	var fakeAccts []mastodontest.Account
	for _, u := range []string{"sa", "sb", "sc"} {
		fakeAccts = append(fakeAccts, fake.AddAccount(u+sfx))
	}
	domain := mail.Get("REMORA_MAIL_DOMAIN")

	var homes []*home
	var needles []needle
	accounts := []string{"alice", "bob", "carol"} // the mail accounts (the list's members)
	for i, acct := range accounts {
		name := acct + sfx // the display name: never on a server
		h := newHome(t, name)
		h.level = "info"
		ip := fmt.Sprintf("127.%d.%d.%d", 10+i, 200, 50+i)
		others := func(list []string) []any {
			var out []any
			for j, u := range list {
				if j != i {
					out = append(out, u)
				}
			}
			return out
		}
		var gtsNames, fakeNames []string
		for j := range 3 {
			gtsNames = append(gtsNames, gtsAccts[j].Username)
			fakeNames = append(fakeNames, fakeAccts[j].Username)
		}
		editConfig(t, h, func(c *Config) {
			c.LAN = &LANConfig{MDNS: "off"}
			c.Listen = []string{"/ip4/" + ip + "/tcp/0"}
			c.PresenceInterval = "2s"
			rl := map[string]any{"requests": 5000, "per": "5m"}
			c.Channels = append(c.Channels,
				ChannelConfig{Name: "social", Adapter: "mastodon", Config: map[string]any{"server": fake.URL, "accounts": others(fakeNames),
					"poll_interval": "1s", "rate_limit": rl}, Secrets: map[string]SecretRef{"token": {File: writeSecret(t, h, "fake.token", fakeAccts[i].Token)}}},
				ChannelConfig{Name: "gts", Adapter: "mastodon", Config: map[string]any{"server": gts.URL, "accounts": others(gtsNames),
					"rate_limit": rl}, Secrets: map[string]SecretRef{"token": {File: writeSecret(t, h, "gts.token", gtsAccts[i].Token)}}},
			)
		})
		addFolderChannel(h, folder)
		addGitChannel(h, remote)
		addMailListChannel(t, h, mail, acct)
		room.add(t, h, i)
		h.start()
		homes = append(homes, h)
		st, err := h.client().Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		pid, err := peer.Decode(st.PeerID)
		if err != nil {
			t.Fatal(err)
		}
		needles = append(needles, needle{"peer ID of " + name, []byte(st.PeerID)}, needle{"peer ID bytes of " + name, []byte(pid)},
			needle{"member name " + name, []byte(name)}, needle{"listen address of " + name, []byte(ip)})
	}
	needles = append(needles, needle{"circle name", []byte(circleName)})

	out := homes[0].ok("circle", "create", circleName)
	circleID := strings.Fields(out)[1]
	needles = append(needles, needle{"circle ID", []byte(circleID)})
	for _, j := range homes[1:] {
		code := inviteCode(homes[0].ok("invite", "--in-person"))
		if out := j.ok("join", code, "--timeout", "120s"); !strings.Contains(out, "joined") {
			t.Fatalf("join: %s", out)
		}
	}

	// Live messages, then messages for carol while she is offline: those
	// go through every channel.
	ctx := context.Background()
	send := func(h *home, req api.SendRequest) string {
		req.Circle = circleID
		req.Text = "secret text " + randomHex(8)
		if _, err := h.client().Send(ctx, req); err != nil {
			t.Fatal(err)
		}
		needles = append(needles, needle{"message text", []byte(req.Text)})
		return req.Text
	}
	live := []string{send(homes[0], api.SendRequest{}), send(homes[1], api.SendRequest{})}
	testenv.WaitFor(t, "the live messages", 2*time.Minute, func() bool {
		return hasAll(t, homes[0], live[1]) && hasAll(t, homes[1], live[0]) && hasAll(t, homes[2], live...)
	})
	carol := homes[2]
	carolID := peerIDOf(t, carol)
	carol.stop()
	published := func() map[string]int64 {
		m := map[string]int64{}
		chs, _ := homes[0].client().Channels(ctx)
		for _, c := range chs {
			m[c.Name] = c.Counters["published"]
		}
		return m
	}
	before := published()
	offline := []string{send(homes[0], api.SendRequest{}), send(homes[0], api.SendRequest{To: []string{carolID}}), send(homes[1], api.SendRequest{})}
	testenv.WaitFor(t, "alice's message posted to every channel", 2*time.Minute, func() bool {
		now := published()
		for name, n := range before {
			if now[name] <= n {
				return false
			}
		}
		return len(now) == 6
	})
	carol.start()
	testenv.WaitFor(t, "carol got what was sent while she was offline", 3*time.Minute, func() bool {
		return hasAll(t, carol, offline...)
	})
	// Every channel carried envelopes to carol.
	var silent []string // carol's channels that read nothing yet, for the failure message
	defer func() {
		if t.Failed() && len(silent) > 0 {
			t.Logf("carol's channels that read nothing: %v", silent)
		}
	}()
	testenv.WaitFor(t, "carol read from every channel", 4*time.Minute, func() bool {
		chs, err := carol.client().Channels(ctx)
		if err != nil || len(chs) != 6 {
			return false
		}
		silent = silent[:0]
		for _, c := range chs {
			if c.Counters["received"] == 0 {
				silent = append(silent, c.Name+" ("+c.State+": "+c.Message+")")
			}
		}
		return len(silent) == 0
	})
	for _, h := range homes {
		h.stop()
	}

	// The scans. Each names a control that must be found.
	check := func(name string, s *scanner) {
		t.Helper()
		if !s.controlHit {
			t.Errorf("%s: the scan of %d bytes did not find the control %q: it did not read the server's data", name, s.bytes, s.control)
		}
		for _, f := range s.found {
			t.Errorf("%s stores the %s (in %s)", name, f.what, f.where)
		}
		t.Logf("%s: scanned %d KiB, %d findings", name, s.bytes>>10, len(s.found))
	}
	{
		s := &scanner{needles: needles, control: []byte("alice@" + domain)}
		s.scanTree(t, filepath.Join(mail.Dir, "mail"))
		check("mail (maildirs, queue, logs)", s)
	}
	{
		s := &scanner{needles: needles, control: []byte(room.room)}
		s.scanTree(t, filepath.Join(mx.Dir, "matrix"))
		check("Dendrite (databases, media, log)", s)
	}
	{
		s := &scanner{needles: needles, control: []byte("sync")}
		n := s.scanGit(t, repo)
		if n == 0 {
			t.Errorf("the repository holds no objects")
		}
		check("git (objects, refs)", s)
	}
	{
		s := &scanner{needles: needles, control: []byte(gtsAccts[0].Username)}
		s.scanTree(t, filepath.Dir(gtsConfig))
		check("GoToSocial (database, storage)", s)
	}
	{
		s := &scanner{needles: needles, control: []byte(fakeAccts[0].Username)}
		for _, b := range fake.Stored() {
			s.scan("status", b)
		}
		check("Mastodon fake (statuses)", s)
	}
	{
		// The folder's files all have neutral names: the control is the
		// folder's own identity file.
		s := &scanner{needles: needles, control: []byte{}}
		s.scanTree(t, folder)
		s.controlHit = s.bytes > 0
		check("shared folder", s)
	}
}

// hasAll reports whether h's inbox holds every text.
func hasAll(t testing.TB, h *home, texts ...string) bool {
	have := map[string]bool{}
	for _, m := range allMessages(t, h) {
		have[m.Text] = true
	}
	for _, x := range texts {
		if !have[x] {
			return false
		}
	}
	return true
}
