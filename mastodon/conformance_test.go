package mastodon_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/remora-p2p/remora/mastodon"
	"github.com/remora-p2p/remora/mastodon/mastodontest"
	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/channeltest"
	"github.com/remora-p2p/remora/sdk/channeltest/faultproxy"
)

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("REMORA_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// alias is where member 0 also has an account: its posts reach the fake by
// federation, late, with IDs from their creation time (InsertBackdated).
const alias = "alice@elsewhere.example"

// harness gives the kit two accounts on a fresh fake server per case.
type harness struct {
	srv   *mastodontest.Server
	proxy *faultproxy.Proxy // between the members and srv
	users []mastodontest.Account
	dirs  []string
}

func newHarness(t *testing.T) channeltest.Harness {
	srv := mastodontest.New(mastodontest.Options{})
	t.Cleanup(srv.Close)
	p, err := faultproxy.New(strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return &harness{srv: srv, proxy: p,
		users: []mastodontest.Account{srv.AddAccount("alice"), srv.AddAccount("bob")},
		dirs:  []string{t.TempDir(), t.TempDir()}}
}

// Proxies lets the kit take the server away and cut a publish half way.
func (h *harness) Proxies() []*faultproxy.Proxy { return []*faultproxy.Proxy{h.proxy} }

// channelConfig is a member's configuration: the other member's account
// (and for bob, alice's federated alias too).
func (h *harness) config(m int) json.RawMessage {
	var accts []string
	for i, u := range h.users {
		if i != m {
			accts = append(accts, u.Acct)
		}
	}
	if m == 1 {
		accts = append(accts, alias)
	}
	b, _ := json.Marshal(map[string]any{"server": "http://" + h.proxy.Addr(), "accounts": accts, "poll_interval": "100ms"})
	return b
}

func (h *harness) Open(ctx context.Context, t *testing.T, a sdk.Adapter, m int) (sdk.Channel, error) {
	return a.Configure(ctx, sdk.ConfigureRequest{
		ChannelID: "kit", Config: h.config(m),
		Secrets:  map[string]string{mastodon.SecretToken: h.users[m].Token},
		StateDir: h.dirs[m], Logger: testLogger(t),
	})
}

func (h *harness) Members() int         { return len(h.users) }
func (h *harness) Address(m int) string { return h.users[m].Acct }

// InvalidateCursor: notification IDs are never reused or renumbered; a
// cursor whose notifications were dismissed or deleted still resumes
// (min_id needs no existing row). A cursor from another account is
// rejected: TestCursorOtherAccount.
func (h *harness) InvalidateCursor(context.Context, *testing.T) error {
	return sdk.Errorf(sdk.CodeUnsupported, "a Mastodon server never invalidates notification IDs; see TestCursorOtherAccount")
}

// InsertBackdated federates a status from member's alias on another server,
// created an hour ago: its ID sorts below every status already delivered.
func (h *harness) InsertBackdated(_ context.Context, t *testing.T, m int, data []byte) error {
	if m != 0 {
		return sdk.Errorf(sdk.CodeUnsupported, "only member 0 has a federated alias")
	}
	h.srv.Federate(alias, "@bob@"+h.srv.Domain()+" "+string(data), "direct", time.Now().Add(-time.Hour))
	return nil
}

func TestConformance(t *testing.T) {
	channeltest.Run(t, mastodon.New(), newHarness,
		channeltest.Timeout(time.Minute), channeltest.Settle(500*time.Millisecond),
		channeltest.Skip("Concurrent", "Mastodon does not notify an account of its own mentions (NotifyService drops from_self), "+
			"and the kit's concurrent writers include the subscriber's own account addressing itself; TestConcurrentPublishers covers concurrency with distinct accounts"))
}

// TestConformanceSubprocess runs the kit against the adapter as a real
// subprocess (this test binary re-executed), over the wire protocol.
func TestConformanceSubprocess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts adapter subprocesses")
	}
	channeltest.Run(t, mastodon.New(), newHarness, channeltest.Self(),
		channeltest.Timeout(time.Minute), channeltest.Settle(500*time.Millisecond),
		channeltest.Skip("Concurrent", "see TestConformance"))
}

// StateDir lets the kit lose member m's state or put back an older copy.
func (h *harness) StateDir(m int) string { return h.dirs[m] }
