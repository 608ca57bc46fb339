package imap

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/channeltest"
	"github.com/remora-p2p/remora/sdk/channeltest/faultproxy"
	"github.com/remora-p2p/remora/testenv"
)

// testLogger routes adapter logs to the test log at warn level and above.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(b []byte) (int, error) {
	w.t.Log(string(b))
	return len(b), nil
}

// harness implements channeltest.Harness for one mode.
type harness struct {
	env     mailEnv
	mode    string
	users   []string // login per member
	folder  string   // watched (and, shared, appended) folder
	extra   map[string]any
	states  []string
	listID  string
	address func(m int) string
	proxies []*faultproxy.Proxy
}

// Proxies lets the kit take the mail servers away and cut a publish.
func (h *harness) Proxies() []*faultproxy.Proxy { return h.proxies }

// behindProxies puts IMAP (and SMTP submission, outside shared mode) behind
// faultproxies for this case.
func (h *harness) behindProxies(t *testing.T) *harness {
	via := func(key, addr string) {
		p, err := faultproxy.New(addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		if h.extra == nil {
			h.extra = map[string]any{}
		}
		h.extra[key] = p.Addr()
		h.proxies = append(h.proxies, p)
	}
	via("imap", h.env.imap)
	if h.mode != ModeShared {
		via("smtp", h.env.submission)
	}
	return h
}

func (h *harness) Members() int { return len(h.users) }

func (h *harness) Address(m int) string {
	if h.address == nil {
		return ""
	}
	return h.address(m)
}

func (h *harness) Open(ctx context.Context, t *testing.T, a sdk.Adapter, m int) (sdk.Channel, error) {
	extra := map[string]any{"folder": h.folder}
	for k, v := range h.extra {
		extra[k] = v
	}
	return a.Configure(ctx, sdk.ConfigureRequest{
		ChannelID: "kit",
		Config:    h.env.config(h.mode, h.users[m], extra),
		Secrets:   password(h.users[m]),
		StateDir:  h.states[m],
		Logger:    testLogger(t),
	})
}

func (h *harness) InvalidateCursor(ctx context.Context, t *testing.T) error {
	seen := map[string]bool{}
	for _, u := range h.users {
		if seen[u] {
			continue
		}
		seen[u] = true
		if err := h.env.newUIDValidity(ctx, u, h.folder); err != nil {
			return err
		}
	}
	return nil
}

// InsertBackdated appends a mail dated a day ago straight into every
// member's folder, the way a late delivery or a mail a filter released from
// Junk arrives.
func (h *harness) InsertBackdated(ctx context.Context, t *testing.T, member int, data []byte) error {
	old := time.Now().Add(-24 * time.Hour)
	raw, _, err := buildMail(outMail{From: h.env.addr(h.users[member]), To: []string{h.env.addr(h.users[member])}, Date: old, Keys: []string{randName("bk")}, Items: [][]byte{data}}, newMarkKey("channel:kit"))
	if err != nil {
		return err
	}
	if h.listID != "" {
		raw = append([]byte("List-Id: kit <"+h.listID+">\r\n"), raw...)
	}
	seen := map[string]bool{}
	for _, u := range h.users {
		if !seen[u] {
			seen[u] = true
			h.env.appendRaw(t, u, h.folder, raw, old)
		}
	}
	return nil
}

func kitOptions() []channeltest.Option {
	return []channeltest.Option{channeltest.Timeout(3 * time.Minute), channeltest.Items(8), channeltest.Settle(2 * time.Second)}
}

// TestKitList runs the conformance kit on the list kit (dave, erin, frank)
// of each list manager, mlmmj and Mailman 3 with its default list
// settings: publish by SMTP submission to the list, read each INBOX.
func TestKitList(t *testing.T) {
	env := needMail(t)
	for _, lm := range listManagers(t) {
		t.Run(lm.name, func(t *testing.T) {
			channeltest.Run(t, New(), func(t *testing.T) channeltest.Harness {
				h := &harness{env: env, mode: ModeList, users: []string{"dave", "erin", "frank"}, folder: "INBOX",
					listID: strings.ReplaceAll(lm.kit, "@", "."), extra: map[string]any{"list_address": lm.kit}}
				for _, u := range h.users {
					env.empty(t, u, "INBOX")
					h.states = append(h.states, t.TempDir())
				}
				return h
			}, kitOptions()...)
		})
	}
}

// TestKitShared runs the kit on one account two members share, each case in
// a fresh folder, with consumed mail deleted.
func TestKitShared(t *testing.T) {
	env := needMail(t)
	channeltest.Run(t, New(), func(t *testing.T) channeltest.Harness {
		h := &harness{env: env, mode: ModeShared, users: []string{"carol", "carol"}, folder: randName("kit-"),
			extra: map[string]any{"consumed": ConsumedDelete}}
		h.states = []string{t.TempDir(), t.TempDir()}
		return h.behindProxies(t)
	}, kitOptions()...)
}

// TestKitDirect runs the kit with mail to members' own addresses; each case
// uses plus-addresses (user+folder@) so its mail lands in a fresh folder.
func TestKitDirect(t *testing.T) {
	env := needMail(t)
	channeltest.Run(t, New(), func(t *testing.T) channeltest.Harness {
		folder := randName("dk")
		h := &harness{env: env, mode: ModeDirect, users: []string{"alice", "bob"}, folder: folder}
		h.address = func(m int) string { return h.users[m] + "+" + folder + "@" + env.domain }
		h.states = []string{t.TempDir(), t.TempDir()}
		return h.behindProxies(t)
	}, kitOptions()...)
}

func TestMain(m *testing.M) {
	channeltest.ServeIfChild(New())
	unlock := lockMailTests()
	code := m.Run()
	unlock()
	os.Exit(code)
}

// lockMailTests serializes test runs of this package across processes (a
// developer's run next to `make test`): the tests share fixed accounts,
// empty INBOXes and restart dovecot, so two runs at once would break each
// other.
func lockMailTests() func() {
	path, ok := testenv.Lookup("REMORA_MAIL_LOCK")
	if !ok {
		return func() {}
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return func() {}
	}
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		fmt.Fprintln(os.Stderr, "imap: waiting for another test run of this package to finish")
		syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}
}

// TestKitSubprocess runs the kit in shared mode against the adapter as a
// go-plugin subprocess (this test binary re-executed), over the real wire
// protocol: typed errors, cursors and deliveries cross the process boundary.
func TestKitSubprocess(t *testing.T) {
	env := needMail(t)
	channeltest.Run(t, New(), func(t *testing.T) channeltest.Harness {
		h := &harness{env: env, mode: ModeShared, users: []string{"carol", "carol"}, folder: randName("kitsub-"),
			extra: map[string]any{"consumed": ConsumedDelete}}
		h.states = []string{t.TempDir(), t.TempDir()}
		return h
	}, append(kitOptions(), channeltest.Self())...)
}

// StateDir lets the kit lose member m's state or put back an older copy.
func (h *harness) StateDir(m int) string { return h.states[m] }
