package mastodon_test

// Tests against a real Mastodon-API server: GoToSocial v0.19.2, started by
// `make testenv` (testenv/svc-gotosocial.sh). Every test makes fresh
// accounts on it. The fake (mastodontest) stays for what a real server
// cannot be made to do on cue: lost answers mid-stream, late federated
// statuses, a dropped stream.

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/remora-p2p/remora/mastodon"
	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/channeltest"
	"github.com/remora-p2p/remora/sdk/channeltest/faultproxy"
	"github.com/remora-p2p/remora/testenv"
	"github.com/remora-p2p/remora/testenv/gotosocial"
)

// gtsOpen configures a channel as acct on the GoToSocial server.
func gtsOpen(t *testing.T, server string, acct gotosocial.Account, cfg map[string]any) (sdk.Channel, error) {
	t.Helper()
	if _, ok := cfg["server"]; !ok {
		cfg["server"] = server
	}
	b, _ := json.Marshal(cfg)
	ch, err := mastodon.New().Configure(t.Context(), sdk.ConfigureRequest{
		ChannelID: "gts", Config: b, Secrets: map[string]string{mastodon.SecretToken: acct.Token},
		StateDir: t.TempDir(), Logger: testLogger(t)})
	if err == nil {
		t.Cleanup(func() { ch.Close() })
	}
	return ch, err
}

func gtsMustOpen(t *testing.T, server string, acct gotosocial.Account, cfg map[string]any) sdk.Channel {
	t.Helper()
	ch, err := gtsOpen(t, server, acct, cfg)
	if err != nil {
		t.Fatalf("configure on GoToSocial: %v", err)
	}
	return ch
}

// gtsHarness gives the kit two fresh accounts on the GoToSocial server per
// case, the members reaching it through a faultproxy.
type gtsHarness struct {
	srv   *gotosocial.Server
	proxy *faultproxy.Proxy // between the members and the server
	users []gotosocial.Account
	dirs  []string
}

// gtsHarnesses returns a harness constructor whose cases share two
// accounts (an account takes seconds to make); each case gets fresh state
// directories and subscribes from the start, and the kit tolerates the
// earlier cases' items it then reads.
func gtsHarnesses(t *testing.T) func(t *testing.T) channeltest.Harness {
	srv := gotosocial.Need(t)
	users := srv.NewAccounts(t, "alice", "bob")
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return func(t *testing.T) channeltest.Harness {
		p, err := faultproxy.New(u.Host)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		return &gtsHarness{srv: srv, proxy: p, users: users, dirs: []string{t.TempDir(), t.TempDir()}}
	}
}

// Proxies lets the kit take the server away, stall it, trickle its answers
// and cut a publish half way. The harness's own calls (Plant) go to the
// server directly.
func (h *gtsHarness) Proxies() []*faultproxy.Proxy { return []*faultproxy.Proxy{h.proxy} }

func (h *gtsHarness) Open(ctx context.Context, t *testing.T, a sdk.Adapter, m int) (sdk.Channel, error) {
	b, _ := json.Marshal(map[string]any{"server": "http://" + h.proxy.Addr(), "accounts": []string{h.users[1-m].Username}, "poll_interval": "1s"})
	return a.Configure(ctx, sdk.ConfigureRequest{
		ChannelID: "kit", Config: b,
		Secrets:  map[string]string{mastodon.SecretToken: h.users[m].Token},
		StateDir: h.dirs[m], Logger: testLogger(t),
	})
}

func (h *gtsHarness) Members() int         { return len(h.users) }
func (h *gtsHarness) Address(m int) string { return h.users[m].Username }

func (h *gtsHarness) InvalidateCursor(context.Context, *testing.T) error {
	return sdk.Errorf(sdk.CodeUnsupported, "a Mastodon server never invalidates notification IDs; see TestCursorOtherAccount")
}

// InsertBackdated: GoToSocial backdates a status given a past scheduled_at,
// but refuses it for statuses that mention anyone ("statuses mentioning
// others can't be backfilled"), and it federates nothing here. The fake's
// federated statuses cover the case (TestConformance).
func (h *gtsHarness) InsertBackdated(context.Context, *testing.T, int, []byte) error {
	return sdk.Errorf(sdk.CodeUnsupported, "GoToSocial cannot backdate a status that mentions anyone; TestConformance covers late federated statuses on the fake")
}

// Plant posts data as member m's account straight through the API (as any
// client holding its token could): a direct status mentioning the other
// member, the way the adapter writes one, after the statuses already
// there. The server's refusal of a status over its character limit (422
// or 400 "exceed max chars", 413 for a body too large) is CodeTooLarge.
func (h *gtsHarness) Plant(ctx context.Context, t *testing.T, m int, data []byte) error {
	code, err := h.srv.Do(ctx, h.users[m].Token, http.MethodPost, "/api/v1/statuses", url.Values{
		"status": {"@" + h.users[1-m].Username + " " + string(data)}, "visibility": {"direct"}, "content_type": {"text/plain"}}, nil)
	if err != nil && (code == http.StatusRequestEntityTooLarge || strings.Contains(err.Error(), "exceed max chars")) {
		return sdk.Errorf(sdk.CodeTooLarge, "gotosocial: plant a status of %d characters: %v", len(data), err)
	}
	return err
}

// TestConformanceGoToSocial runs the whole kit against the real server,
// the Concurrent case included: GoToSocial notifies an account of its own
// mentions, and the adapter accepts items from its own account.
func TestConformanceGoToSocial(t *testing.T) {
	channeltest.Run(t, mastodon.New(), gtsHarnesses(t),
		channeltest.Timeout(2*time.Minute), channeltest.Settle(time.Second))
}

// TestGoToSocialDescribesItself: what the adapter declares on GoToSocial.
func TestGoToSocialDescribesItself(t *testing.T) {
	srv := gotosocial.Need(t)
	accts := srv.NewAccounts(t, "alice", "bob")
	alice, bob := accts[0], accts[1]
	caps := gtsMustOpen(t, srv.URL, alice, map[string]any{"accounts": []string{bob.Username}}).Capabilities()
	want := sdk.Capabilities{
		MaxPayload: 500 - len("@"+bob.Username+" "), Counting: sdk.CountCodepoints,
		Idempotency: sdk.Idempotency{Level: sdk.IdempotencyWindow, Window: sdk.Duration(time.Hour)},
		RateLimit:   sdk.RateLimit{Requests: 300, Per: sdk.Duration(5 * time.Minute)},
	}
	if caps.MaxPayload != want.MaxPayload || caps.Counting != want.Counting || caps.Idempotency != want.Idempotency || caps.RateLimit != want.RateLimit {
		t.Errorf("capabilities %+v,\nwant max payload %d, counting %s, idempotency %+v, rate limit %+v",
			caps, want.MaxPayload, want.Counting, want.Idempotency, want.RateLimit)
	}
	// Without a state directory only the server could dedupe a retried key,
	// and GoToSocial does not.
	b, _ := json.Marshal(map[string]any{"server": srv.URL, "accounts": []string{bob.Username}})
	ch, err := mastodon.New().Configure(t.Context(), sdk.ConfigureRequest{Config: b,
		Secrets: map[string]string{mastodon.SecretToken: alice.Token}})
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if got := ch.Capabilities().Idempotency.Level; got != sdk.IdempotencyNone {
		t.Errorf("idempotency without a state directory: %s, want none", got)
	}
}

// TestGoToSocialStreams: GoToSocial advertises its streaming API as
// wss://HOST whatever its protocol and port; the adapter streams from the
// server's own URL instead of degrading to polling. With polling set to an
// hour, only the stream can deliver the item.
func TestGoToSocialStreams(t *testing.T) {
	srv := gotosocial.Need(t)
	accts := srv.NewAccounts(t, "alice", "bob")
	alice, bob := accts[0], accts[1]
	pub := gtsMustOpen(t, srv.URL, alice, map[string]any{"accounts": []string{bob.Username}})
	sub := gtsMustOpen(t, srv.URL, bob, map[string]any{"accounts": []string{alice.Username}, "poll_interval": "1h"})
	r := subscribe(t, sub, nil)
	testenv.WaitFor(t, "the stream open", 30*time.Second, func() bool { return health(sub).Counters["stream_connects"] == 1 })
	x := armored(200)
	if res := publish(t, pub, item(x)); res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	testenv.WaitFor(t, "the item over the stream", 30*time.Second, func() bool { got, _, _ := r.counts(); return got[x] == 1 })
	if h := health(sub); h.State != sdk.HealthOK || h.Counters["polls"] != 0 {
		t.Errorf("health %s %q %v: want ok, streaming, no polls", h.State, h.Message, h.Counters)
	}
}

// TestGoToSocialRemoteMentionCounts: GoToSocial counts a post's text as
// written, "@user@domain" in full. The declared max payload is exactly what
// the server takes, and one more is TooLarge (its 400 "exceed max chars"),
// not an unknown, retried error.
//
// The remote account's domain is an IP literal on loopback: the server
// tries to look the account up, and its HTTP client (block-ips: all,
// and loopback is never dialled) refuses before any packet or DNS query.
func TestGoToSocialRemoteMentionCounts(t *testing.T) {
	srv := gotosocial.Need(t)
	accts := srv.NewAccounts(t, "alice", "bob")
	alice, bob := accts[0], accts[1]
	const remote = "carol@127.0.0.1"
	ch := gtsMustOpen(t, srv.URL, alice, map[string]any{"accounts": []string{bob.Username, remote}})
	max := ch.Capabilities().MaxPayload
	if want := 500 - len("@"+bob.Username+" @"+remote+" "); max != want {
		t.Fatalf("max payload %d, want %d (the remote mention counts in full)", max, want)
	}
	res := publish(t, ch, item(armored(max)), item(armored(max+1)))
	if res[0].Err != nil {
		t.Errorf("exactly max payload: %v", res[0].Err)
	}
	if !errors.Is(res[1].Err, sdk.ErrTooLarge) {
		t.Errorf("max payload + 1: got %v, want too large", res[1].Err)
	}
	// The server's own answer to a post one character over, sent raw: the
	// wording the adapter maps to TooLarge.
	var st json.RawMessage
	code, err := srv.Do(t.Context(), alice.Token, http.MethodPost, "/api/v1/statuses", url.Values{
		"status": {"@" + remote + " " + armored(500-len("@"+remote+" ")+1)}, "visibility": {"direct"}}, &st)
	if code != http.StatusBadRequest || err == nil || !strings.Contains(err.Error(), "exceed max chars") {
		t.Errorf("raw over-limit post: %d %v; want 400 exceed max chars (the wording the adapter maps to TooLarge)", code, err)
	}
}

// TestGoToSocialMarkdownAccount: an account whose default post format is
// markdown would render armor such as "-_cd_-" as emphasis. The adapter
// posts text/plain and reads the source text, so the item arrives intact.
// The control post, sent raw without content_type, shows the server does
// alter it for this account.
func TestGoToSocialMarkdownAccount(t *testing.T) {
	srv := gotosocial.Need(t)
	accts := srv.NewAccounts(t, "alice", "bob")
	alice, bob := accts[0], accts[1]
	ctx := t.Context()
	if _, err := srv.Do(ctx, alice.Token, http.MethodPatch, "/api/v1/accounts/update_credentials",
		url.Values{"source[status_content_type]": {"text/markdown"}}, nil); err != nil {
		t.Fatal(err)
	}
	data := "rm1AAAA-_cd_-BBBB__ee__CCCC_f_g_DDDD" + armored(60)
	var control struct {
		Content string `json:"content"`
	}
	if _, err := srv.Do(ctx, alice.Token, http.MethodPost, "/api/v1/statuses",
		url.Values{"status": {"@" + bob.Username + " " + strings.Replace(data, "rm1", "rm2", 1)}, "visibility": {"direct"}}, &control); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(control.Content, "<em>") && !strings.Contains(control.Content, "<strong>") {
		t.Fatalf("control post rendered %q: the account does not render markdown, so this test proves nothing", control.Content)
	}

	pub := gtsMustOpen(t, srv.URL, alice, map[string]any{"accounts": []string{bob.Username}})
	sub := gtsMustOpen(t, srv.URL, bob, map[string]any{"accounts": []string{alice.Username}})
	res := publish(t, pub, item(data))
	if res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	r := subscribe(t, sub, nil)
	testenv.WaitFor(t, "the item", 30*time.Second, func() bool { got, _, _ := r.counts(); return got[data] == 1 })
	// What another client shows bob: plain text, no emphasis.
	var seen struct {
		Content string `json:"content"`
	}
	if _, err := srv.Do(ctx, bob.Token, http.MethodGet, "/api/v1/statuses/"+res[0].ID, nil, &seen); err != nil {
		t.Fatal(err)
	}
	if got := mastodon.PlainText(seen.Content); got != "@"+bob.Username+" "+data {
		t.Errorf("the post reads %q in other clients, want the armor unaltered", got)
	}
}

// xffProxy puts a reverse proxy in front of the server that presents every
// request as coming from one client IP (X-Forwarded-For; the server trusts
// its loopback proxy), as a real deployment behind nginx does. Requests
// straight from 127.0.0.1 are exempt from the test server's rate limit;
// through the proxy they count against a bucket of their own.
func xffProxy(t *testing.T, target, clientIP string) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(u)
		r.Out.Host = u.Host
		r.Out.Header.Set("X-Forwarded-For", clientIP)
	}}
	ps := httptest.NewServer(rp)
	t.Cleanup(ps.Close)
	return ps.URL
}

// TestGoToSocialRateLimit: GoToSocial limits requests per client IP, 300
// per 5 minutes, in one bucket shared by every account and by anonymous
// calls; its 429 has no Retry-After, only X-RateLimit-Reset. The adapter
// declares that limit, shows it once in Health, sees the bucket shrink from
// another account's requests, stops publishing before the server refuses,
// and turns a 429 into RateLimited with the time to the reset.
func TestGoToSocialRateLimit(t *testing.T) {
	srv := gotosocial.Need(t)
	accts := srv.NewAccounts(t, "alice", "bob")
	alice, bob := accts[0], accts[1]
	// A fresh client IP per run (documentation range; GoToSocial buckets
	// IPv6 by /64): its own bucket.
	r := make([]byte, 4)
	rand.Read(r)
	ip := fmt.Sprintf("2001:db8:%x:%x::1", binary.BigEndian.Uint16(r), binary.BigEndian.Uint16(r[2:]))
	proxy := xffProxy(t, srv.URL, ip)
	a := gtsMustOpen(t, proxy, alice, map[string]any{"accounts": []string{bob.Username}, "stream": "none"})
	b := gtsMustOpen(t, proxy, bob, map[string]any{"accounts": []string{alice.Username}, "stream": "none"})
	if got := a.Capabilities().RateLimit; got != (sdk.RateLimit{Requests: 300, Per: sdk.Duration(5 * time.Minute)}) {
		t.Errorf("declared rate limit %+v, want 300 per 5m", got)
	}
	if res := publish(t, a, item(armored(100))); res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	h := health(a)
	if strings.Count(h.Message, "left until") != 1 || !strings.Contains(h.Message, "per client IP") || strings.Contains(h.Message, "statuses") {
		t.Errorf("health shows the bucket %q; want it once, as per client IP", h.Message)
	}
	// Anonymous requests from the same address spend the same bucket.
	raw := func() *http.Response {
		t.Helper()
		resp, err := http.Get(proxy + "/api/v1/instance")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	left := func(resp *http.Response) int {
		var n int
		json.Unmarshal([]byte(resp.Header.Get("X-RateLimit-Remaining")), &n)
		return n
	}
	before := left(raw())
	for range 10 {
		raw()
	}
	if res := publish(t, b, item(armored(100))); res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	after := left(raw())
	if before-after < 12 {
		t.Errorf("remaining %d then %d: anonymous calls and bob's post did not spend the same bucket", before, after)
	}
	// Spend the bucket down; alice's publishes then stop by themselves, a
	// few requests short of the end, leaving those to reads.
	for left(raw()) > 8 {
	}
	var stopped error
	for range 10 {
		if res := publish(t, a, item(armored(100))); res[0].Err != nil {
			stopped = res[0].Err
			break
		}
	}
	var se *sdk.Error
	if !errors.As(stopped, &se) || se.Code != sdk.CodeRateLimited || se.RetryAfter <= 0 || se.RetryAfter > 5*time.Minute ||
		!strings.Contains(se.Error(), "budget spent") {
		t.Fatalf("publishing into a spent bucket: %v; want RateLimited before the server's 429, retry-after up to 5m", stopped)
	}
	if resp := raw(); resp.StatusCode != http.StatusOK {
		t.Errorf("after alice stopped, the next request got %s: she spent the reserve", resp.Status)
	}
	// Spend the rest: GoToSocial's 429 carries X-RateLimit-Reset and no
	// Retry-After. Bob, who has not seen the bucket this low, posts, and the
	// 429 becomes RateLimited with the time to the reset.
	var last *http.Response
	for last = raw(); last.StatusCode != http.StatusTooManyRequests; last = raw() {
	}
	if last.Header.Get("Retry-After") != "" || last.Header.Get("X-RateLimit-Reset") == "" {
		t.Errorf("429 headers: Retry-After %q, X-RateLimit-Reset %q; the test expects GoToSocial's (none, set)",
			last.Header.Get("Retry-After"), last.Header.Get("X-RateLimit-Reset"))
	}
	reset, err := time.Parse(time.RFC3339Nano, last.Header.Get("X-RateLimit-Reset"))
	if err != nil {
		t.Fatal(err)
	}
	res := publish(t, b, item(armored(100)))
	if !errors.As(res[0].Err, &se) || se.Code != sdk.CodeRateLimited || !strings.Contains(se.Error(), "429") {
		t.Fatalf("bob's publish into the 429: %v; want RateLimited from the server's answer", res[0].Err)
	}
	if d := se.RetryAfter - time.Until(reset); d < -2*time.Second || d > 2*time.Second {
		t.Errorf("retry-after %s, want the time to X-RateLimit-Reset (%s)", se.RetryAfter, time.Until(reset).Round(time.Second))
	}
}

// TestGoToSocialOAuthFlow: the flow `remora channel add mastodon` runs,
// against the real server, which offers no password grant: register an
// app, the person opens the authorize URL, signs in and allows, and pastes
// the code the server shows; the code is exchanged once for a token that
// works.
func TestGoToSocialOAuthFlow(t *testing.T) {
	srv := gotosocial.Need(t)
	accts := srv.NewAccounts(t, "alice", "bob")
	alice, bob := accts[0], accts[1]
	ctx := t.Context()
	app, err := mastodon.RegisterApp(ctx, srv.URL, "test client")
	if err != nil {
		t.Fatal(err)
	}
	code, err := srv.Approve(ctx, app.AuthCodeURL(), alice.Email, alice.Password)
	if err != nil {
		t.Fatalf("the browser step: %v", err)
	}
	token, err := app.ExchangeCode(ctx, code)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.ExchangeCode(ctx, code); !errors.Is(err, sdk.ErrAuthFailed) {
		t.Errorf("second exchange of the same code: got %v, want auth failed", err)
	}
	ch := gtsMustOpen(t, srv.URL, gotosocial.Account{Token: token}, map[string]any{"accounts": []string{bob.Username}})
	if res := publish(t, ch, item(armored(100))); res[0].Err != nil {
		t.Fatalf("publish with the new token: %v", res[0].Err)
	}
	// No password grant on this server.
	var tok map[string]any
	if _, err := srv.Do(ctx, "", http.MethodPost, "/oauth/token", url.Values{"grant_type": {"password"},
		"client_id": {app.ClientID}, "client_secret": {app.ClientSecret}, "username": {alice.Email},
		"password": {alice.Password}, "scope": {"read write"}}, &tok); err == nil {
		t.Errorf("the password grant worked (%v): this server is not the one the adapter's flow is written for", tok)
	}
}

// StateDir lets the kit lose member m's state or put back an older copy.
func (h *gtsHarness) StateDir(m int) string { return h.dirs[m] }
