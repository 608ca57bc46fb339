package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"aead.dev/minisign"
	"github.com/libp2p/go-libp2p/core/peer"
	p2ptest "github.com/libp2p/go-libp2p/core/test"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/core/relaylist"
	"github.com/remora-p2p/remora/core/transport"
	"github.com/remora-p2p/remora/mastodon/mastodontest"
	"github.com/remora-p2p/remora/matrix"
	"github.com/remora-p2p/remora/matrix/matrixtest"
	"github.com/remora-p2p/remora/testenv"
)

// TestEachBoxAlone proves every bootstrap box on its own (docs/discovery.md):
// real daemons (`remora run`, configured through config.toml) with every
// other box disabled find each other, connect, and carry a message; the box
// reports what it found, and `remora peers` names it as the box whose
// address made the path. Members of the non-channel boxes first make their
// circle over a folder channel, which they then drop. The time from start
// to the first member connected is logged per box (BENCHMARKS.md).
func TestEachBoxAlone(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real daemons")
	}
	t.Run("mdns", testMDNSAlone)
	t.Run("cache", testCacheAlone)
	t.Run("pex", testPEXAlone)
	t.Run("web", func(t *testing.T) {
		t.Run("webdav", func(t *testing.T) { testBoardAlone(t, "web", webDAVBox(t)) })
		t.Run("dropbox", func(t *testing.T) { testBoardAlone(t, "web", dropboxBox(t)) })
	})
	t.Run("dns", func(t *testing.T) { testBoardAlone(t, "dns", dnsBox(t)) })
	t.Run("relaylist", testRelayListAlone)
	t.Run("dir", func(t *testing.T) {
		shared := t.TempDir()
		testChannelAlone(t, func(h *home, i int) {
			h.ok("channel", "add", "folder", "--adapter", "dir", "--set", "path="+shared, "--set", "poll_interval=100ms")
		})
	})
	t.Run("git", func(t *testing.T) {
		v := testenv.Need(t, "git", "REMORA_GIT_ROOT", "REMORA_GIT_DAEMON_URL")
		name := matrixtest.RandomName("boxes-") + ".git"
		if out, err := exec.Command("git", "init", "-q", "--bare", filepath.Join(v[0], name)).CombinedOutput(); err != nil {
			t.Fatalf("git init: %v\n%s", err, out)
		}
		testChannelAlone(t, func(h *home, i int) {
			h.ok("channel", "add", "repo", "--adapter", "git", "--set", "remote="+v[1]+"/"+name,
				"--set", "flush_interval=200ms", "--set", "poll_min=500ms", "--set", "poll_max=2s")
		})
	})
	t.Run("imap", func(t *testing.T) {
		v := testenv.Need(t, "mail", "REMORA_MAIL_IMAP", "REMORA_MAIL_CA", "REMORA_MAIL_DOMAIN", "REMORA_MAIL_PASSWORD_SUFFIX")
		unlock := lockMail()
		defer unlock()
		folder := matrixtest.RandomName("boxes-")
		testChannelAlone(t, func(h *home, i int) {
			pw := writeSecret(t, h, "mail.pw", "carol"+v[3])
			h.ok("channel", "add", "mail", "--adapter", "imap", "--set", "mode=shared", "--set", "imap="+v[0],
				"--set", "ca_file="+v[1], "--set", "username=carol", "--set", "address=carol@"+v[2], "--set", "folder="+folder,
				"--secret", "password=file:"+pw)
		})
	})
	t.Run("matrix", func(t *testing.T) {
		v := testenv.Need(t, "matrix", "REMORA_MATRIX_URL", "REMORA_MATRIX_SECRET")
		hs := matrixtest.Homeserver{URL: v[0], Secret: v[1]}
		users := []matrixtest.User{hs.Register(t), hs.Register(t)}
		room := matrixtest.CreateRoom(t, users[0], matrixtest.RandomName("boxes "), users[1:], nil)
		matrixtest.SetStateLevel(t, users[0], room, matrix.BoardType(string(room)), 0)
		testChannelAlone(t, func(h *home, i int) {
			pw := writeSecret(t, h, "matrix.pw", users[i].Password)
			h.ok("channel", "add", "room", "--adapter", "matrix", "--id", string(room), "--set", "homeserver="+hs.URL,
				"--set", "user="+string(users[i].ID), "--set", "room="+string(room), "--secret", "password=file:"+pw)
		})
	})
	t.Run("mastodon", func(t *testing.T) {
		fake := mastodontest.New(mastodontest.Options{})
		defer fake.Close()
		accts := []mastodontest.Account{fake.AddAccount("alice"), fake.AddAccount("bob")}
		testChannelAlone(t, func(h *home, i int) {
			tok := writeSecret(t, h, "masto.token", accts[i].Token)
			h.ok("channel", "add", "social", "--adapter", "mastodon", "--id", "social", "--set", "server="+fake.URL,
				"--set", fmt.Sprintf("accounts=[%s]", accts[1-i].Username), "--set", "poll_interval=1s",
				"--secret", "token=file:"+tok)
		})
	})
}

// lockMail serializes with the imap package's tests, which restart dovecot.
func lockMail() func() {
	path, ok := testenv.Lookup("REMORA_MAIL_LOCK")
	if !ok {
		return func() {}
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return func() {}
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
	return func() { f.Close() }
}

func writeSecret(t testing.TB, h *home, name, value string) string {
	t.Helper()
	path := filepath.Join(h.dir, name)
	if err := os.WriteFile(path, []byte(value), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// editConfig changes h's config.toml.
func editConfig(t testing.TB, h *home, f func(c *Config)) {
	t.Helper()
	path := filepath.Join(h.dir, "config.toml")
	c, err := loadConfig(path, builtinNames())
	if err != nil {
		t.Fatal(err)
	}
	f(c)
	if err := saveConfig(path, c); err != nil {
		t.Fatal(err)
	}
}

func off() *bool { b := false; return &b }
func on() *bool  { b := true; return &b }

// onlyBox turns every box off except those keep sets up again.
func onlyBox(c *Config) {
	c.LAN = &LANConfig{MDNS: "off"}
	c.Cache = &CacheConfig{Enabled: off()}
	c.PEX = &PEXConfig{Enabled: off()}
	c.Web, c.DNS = nil, nil
	c.RelayList = &RelayListConfig{Enabled: off()}
}

// members makes n homes with every box off, each listening on a fixed
// loopback port (so that what one learned of another stays true across a
// restart, as a fixed port does for a home router's forwarding).
func members(t *testing.T, n int, tune func(i int, c *Config)) []*home {
	var hs []*home
	for i, name := range []string{"alice", "bob", "carol"}[:n] {
		h := newHome(t, name)
		port := testenv.FreePort(t)
		editConfig(t, h, func(c *Config) {
			onlyBox(c)
			c.Listen = []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port)}
			c.PresenceInterval = "3s"
			if tune != nil {
				tune(i, c)
			}
		})
		hs = append(hs, h)
	}
	return hs
}

// formCircle makes a circle of hs (daemons running) over whatever channel
// they have: the first creates it and invites the others.
func formCircle(t testing.TB, hs []*home) string {
	t.Helper()
	out := hs[0].ok("circle", "create", "friends")
	circleID := strings.Fields(out)[1]
	for _, j := range hs[1:] {
		code := inviteCode(hs[0].ok("invite", "--in-person"))
		if out := j.ok("join", code, "--timeout", "120s"); !strings.Contains(out, "joined") {
			t.Fatalf("join: %s", out)
		}
	}
	return circleID
}

// formOverFolder makes the circle over a folder channel, then stops the
// daemons and removes the channel: what they know of each other afterwards
// is the circle, not where the others are.
func formOverFolder(t *testing.T, hs []*home) string {
	t.Helper()
	shared := t.TempDir()
	for _, h := range hs {
		h.ok("channel", "add", "folder", "--adapter", "dir", "--set", "path="+shared, "--set", "poll_interval=100ms")
		h.start()
	}
	id := formCircle(t, hs)
	for _, h := range hs {
		h.stop()
		h.ok("channel", "remove", "folder")
	}
	return id
}

// peerOf returns what a's daemon says of b.
func peerOf(a, b *home) (api.Peer, bool) {
	st, err := b.client().Status(context.Background())
	if err != nil {
		return api.Peer{}, false
	}
	peers, err := a.client().Peers(context.Background())
	if err != nil {
		return api.Peer{}, false
	}
	for _, p := range peers {
		if p.PeerID == st.PeerID {
			return p, true
		}
	}
	return api.Peer{}, false
}

func live(p api.Peer) bool { return p.Path != "" && p.Path != "channel" && p.Path != "none" }

// connectAndTalk waits until a and b have a live path, checks that one of
// them names box as the box whose address made it, and carries a message
// from a to b over it. It returns the time to the connection from start.
func connectAndTalk(t *testing.T, box string, start time.Time, a, b *home) time.Duration {
	t.Helper()
	testenv.WaitFor(t, a.name+" and "+b.name+" connected", 90*time.Second, func() bool {
		pa, _ := peerOf(a, b)
		pb, _ := peerOf(b, a)
		return live(pa) || live(pb)
	})
	took := time.Since(start)
	testenv.WaitFor(t, "a side naming "+box+" as the box that made the path", 30*time.Second, func() bool {
		pa, _ := peerOf(a, b)
		pb, _ := peerOf(b, a)
		return (live(pa) && strings.HasPrefix(pa.Via, box)) || (live(pb) && strings.HasPrefix(pb.Via, box))
	})
	text := "found through " + box
	a.ok("send", text)
	testenv.WaitFor(t, b.name+" got the message", 60*time.Second, func() bool {
		for _, m := range allMessages(t, b) {
			if m.Text == text && !strings.HasPrefix(m.Path, "channel") {
				return true
			}
		}
		return false
	})
	return took
}

// boxReport returns the named box from h's report.
func boxReport(t *testing.T, h *home, name string) api.Box {
	t.Helper()
	boxes, err := h.client().Boxes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range boxes {
		if strings.HasPrefix(b.Name, name) {
			return b
		}
	}
	t.Fatalf("no box %s in %+v", name, boxes)
	return api.Box{}
}

// checkOnlyBox fails unless box is the only configured box of h that found
// anyone, and it found a member.
func checkOnlyBox(t *testing.T, h *home, box string) {
	t.Helper()
	// A member the other side dialled first is found by this side's box on
	// its next read (boards are read every 30 s by default).
	testenv.WaitFor(t, h.name+"'s "+box+" box reporting a member", 60*time.Second, func() bool {
		return boxReport(t, h, box).Found > 0
	})
	boxes, err := h.client().Boxes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range boxes {
		mine := strings.HasPrefix(b.Name, box)
		if mine && (b.Found < 1 || b.State != "ok") {
			t.Errorf("%s: box %s: %+v, want ok with a member found", h.name, b.Name, b)
		}
		if !mine && b.Configured && b.Found > 0 {
			t.Errorf("%s: box %s also found members although it should be off: %+v", h.name, b.Name, b)
		}
	}
}

func testCacheAlone(t *testing.T) {
	hs := members(t, 2, func(_ int, c *Config) { c.Cache = &CacheConfig{Enabled: on()} })
	formOverFolder(t, hs)
	// the circle's members met over the folder: run once more to let the
	// cache score a working dial, then restart with the cache alone
	shared := t.TempDir()
	for _, h := range hs {
		h.ok("channel", "add", "folder", "--adapter", "dir", "--set", "path="+shared, "--set", "poll_interval=100ms")
		h.start()
	}
	testenv.WaitFor(t, "alice and bob connected over the folder, each caching the other", 120*time.Second, func() bool {
		p, _ := peerOf(hs[0], hs[1])
		q, _ := peerOf(hs[1], hs[0])
		return live(p) && p.Cached > 0 && q.Cached > 0
	})
	for _, h := range hs {
		h.stop()
		h.ok("channel", "remove", "folder")
	}
	start := time.Now()
	for _, h := range hs {
		h.start()
	}
	took := connectAndTalk(t, "cache", start, hs[0], hs[1])
	t.Logf("box cache: first member connected %v after start", took.Round(time.Millisecond))
	checkOnlyBox(t, hs[0], "cache")
}

func testPEXAlone(t *testing.T) {
	// alice keeps a cache and gossips; bob and carol have peer exchange
	// only: alice's cache reaches them, and they find each other through
	// her records alone.
	hs := members(t, 3, func(i int, c *Config) {
		if i == 0 {
			c.Cache = &CacheConfig{Enabled: on()}
		}
	})
	shared := t.TempDir()
	for _, h := range hs {
		h.ok("channel", "add", "folder", "--adapter", "dir", "--set", "path="+shared, "--set", "poll_interval=100ms")
		h.start()
	}
	formCircle(t, hs)
	testenv.WaitFor(t, "alice connected to bob and carol over the folder, caching both", 90*time.Second, func() bool {
		p1, _ := peerOf(hs[0], hs[1])
		p2, _ := peerOf(hs[0], hs[2])
		return live(p1) && live(p2) && p1.Cached > 0 && p2.Cached > 0
	})
	for _, h := range hs {
		h.stop()
		h.ok("channel", "remove", "folder")
	}
	for i, h := range hs {
		editConfig(t, h, func(c *Config) {
			c.PEX = &PEXConfig{Enabled: on(), Interval: "2s"}
			if i > 0 {
				c.Cache = &CacheConfig{Enabled: off()}
			}
		})
	}
	start := time.Now()
	for _, h := range hs {
		h.start()
	}
	took := connectAndTalk(t, "pex", start, hs[1], hs[2])
	t.Logf("box pex: bob and carol connected %v after start", took.Round(time.Millisecond))
	checkOnlyBox(t, hs[1], "pex")
}

// testBoardAlone runs a board box (web, dns) alone; box sets it up per
// member. It returns the members, their daemons running.
func testBoardAlone(t *testing.T, name string, box func(i int, c *Config)) []*home {
	hs := members(t, 2, nil)
	formOverFolder(t, hs)
	for i, h := range hs {
		editConfig(t, h, func(c *Config) { box(i, c) })
	}
	start := time.Now()
	for _, h := range hs {
		h.start()
	}
	took := connectAndTalk(t, name, start, hs[0], hs[1])
	t.Logf("box %s: first member connected %v after start", t.Name(), took.Round(time.Millisecond))
	checkOnlyBox(t, hs[0], name)
	checkOnlyBox(t, hs[1], name)
	return hs
}

func secretFile(t *testing.T, path string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	return path
}

func webDAVBox(t *testing.T) func(int, *Config) {
	v := testenv.Need(t, "web", "REMORA_WEB_DAV_URL", "REMORA_WEB_DAV_USER", "REMORA_WEB_DAV_PASSWORD_FILE")
	url := v[0] + "/" + matrixtest.RandomName("boxes-") + ".txt"
	return func(_ int, c *Config) {
		c.Web = &WebConfig{URL: url, Publish: "put", Username: v[1],
			Secrets: map[string]SecretRef{"password": {File: secretFile(t, v[2])}}}
	}
}

func dropboxBox(t *testing.T) func(int, *Config) {
	v := testenv.Need(t, "web", "REMORA_WEB_DROPBOX_URL", "REMORA_WEB_DROPBOX_TOKEN_FILE")
	return func(_ int, c *Config) {
		c.Web = &WebConfig{URL: v[0], Publish: "dropbox", Secrets: map[string]SecretRef{"token": {File: secretFile(t, v[1])}}}
	}
}

func dnsBox(t *testing.T) func(int, *Config) {
	v := testenv.Need(t, "dns", "REMORA_DNS_SERVER", "REMORA_DNS_ZONE", "REMORA_DNS_TSIG_NAME", "REMORA_DNS_TSIG_ALGORITHM", "REMORA_DNS_TSIG_SECRET_FILE")
	name := matrixtest.RandomName("_remora-") + "." + v[1]
	return func(_ int, c *Config) {
		c.DNS = &DNSConfig{Name: name, Server: v[0], UpdateServer: v[0], TSIGName: v[2], TSIGAlgorithm: v[3],
			Secrets: map[string]SecretRef{"tsig_secret": {File: secretFile(t, v[4])}}}
	}
}

// testChannelAlone runs two members whose only box is one channel: they make
// their circle over it and connect through the presence it carries.
func testChannelAlone(t *testing.T, addChannel func(h *home, i int)) {
	hs := members(t, 2, nil)
	for i, h := range hs {
		addChannel(h, i)
		h.start()
	}
	formCircle(t, hs)
	start := time.Now()
	took := connectAndTalk(t, "channel:", start, hs[0], hs[1])
	t.Logf("box %s: connected %v after the join", t.Name(), took.Round(time.Millisecond))
	checkOnlyBox(t, hs[0], "channel:")
}

// testRelayListAlone: a volunteer relay (circuit relay v2, open to anyone,
// as volunteers run it) is in a signed list served from a URL, with a dead
// one; the members know nothing else. Each reserves a slot on the live one
// and dials the other through it; the path may then upgrade to direct over
// what identify tells. Each daemon records its reservation outcomes, and a
// list built from them drops the dead relay.
func testRelayListAlone(t *testing.T) {
	live := volunteerRelay(t)
	signer := newListSigner(t)
	dead := relaylist.Relay{Peer: p2ptest.RandPeerIDFatal(t), Addrs: []ma.Multiaddr{ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", testenv.FreePort(t)))}, Health: 0.5}
	bundle := signer.sign(1, live, dead)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(bundle) }))
	defer srv.Close()
	hs := testBoardAlone(t, "relaylist", func(_ int, c *Config) {
		c.RelayList = &RelayListConfig{Enabled: on(), URL: srv.URL + "/relays.bundle", RootKey: signer.root(), After: "1s"}
	})
	// curation from what the daemon saw
	h := hs[0]
	dials := filepath.Join(h.dir, "dials.csv")
	testenv.WaitFor(t, "alice's daemon recording a reservation on each relay", 60*time.Second, func() bool {
		out := h.ok("bootstrap", "dials")
		return strings.Contains(out, live.Peer.String()+",") && !strings.Contains(out, live.Peer.String()+",0,") &&
			strings.Contains(out, dead.Peer.String()+",0,") && !strings.Contains(out, dead.Peer.String()+",0,0")
	})
	h.ok("bootstrap", "dials", "--out", dials)
	cands := filepath.Join(h.dir, "candidates.csv")
	rows := fmt.Sprintf("peer,addrs\n%s,%s\n%s,%s\n", dead.Peer, dead.Addrs[0], live.Peer, live.Addrs[0])
	if err := os.WriteFile(cands, []byte(rows), 0o644); err != nil {
		t.Fatal(err)
	}
	built := filepath.Join(h.dir, "relays.csv")
	out := h.ok("bootstrap", "build", cands, "--health", dials, "--out", built, "--seq", "2", "--min-health", "0.4")
	list, _ := os.ReadFile(built)
	if !strings.Contains(out, "1 relays (1 dropped as dead)") || !strings.Contains(string(list), live.Peer.String()) || strings.Contains(string(list), dead.Peer.String()) {
		t.Fatalf("build from the daemon's dials kept the dead relay or lost the live one:\n%s\n%s", out, list)
	}
	if d := boxReport(t, h, "relaylist").Detail; !strings.Contains(d, "list seq 1 from url") || !strings.Contains(d, "reservations on 2 volunteer relays") {
		t.Errorf("relaylist detail %q", d)
	}
}

// volunteerRelay runs a circuit relay open to anyone, as volunteers run
// them, and returns it as a list entry.
func volunteerRelay(t *testing.T) relaylist.Relay {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	relay, err := transport.New(context.Background(), transport.Options{
		Identity: key, ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"},
		Allow: func(peer.ID) bool { return true }, RelayService: &transport.RelayOptions{},
		ForceReachability: transport.ReachabilityPublic,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() })
	r := relaylist.Relay{Peer: relay.ID(), Health: 1}
	for _, a := range relay.Addrs() {
		r.Addrs = append(r.Addrs, a.Multiaddr)
	}
	return r
}

// listSigner is a test deployment's root and CI signing key.
type listSigner struct {
	rootPub minisign.PublicKey
	sigPriv minisign.PrivateKey
	d, ds   []byte
}

func newListSigner(t *testing.T) *listSigner {
	rootPub, rootPriv, _ := minisign.GenerateKey(rand.Reader)
	sigPub, sigPriv, _ := minisign.GenerateKey(rand.Reader)
	d, ds := relaylist.Delegate(rootPriv, sigPub, time.Now().Add(24*time.Hour))
	return &listSigner{rootPub: rootPub, sigPriv: sigPriv, d: d, ds: ds}
}

func (s *listSigner) root() string { return relaylist.KeyString(s.rootPub) }

func (s *listSigner) sign(seq uint64, relays ...relaylist.Relay) []byte {
	return relaylist.Sign(&relaylist.List{Seq: seq, Expires: time.Now().Add(time.Hour), Relays: relays}, s.sigPriv, s.d, s.ds)
}
