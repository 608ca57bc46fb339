package mastodon_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/remora-p2p/remora/mastodon"
	"github.com/remora-p2p/remora/mastodon/mastodontest"
	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/testenv"
)

func configure(t *testing.T, srv *mastodontest.Server, token string, cfg map[string]any) (sdk.Channel, error) {
	t.Helper()
	if _, ok := cfg["server"]; !ok {
		cfg["server"] = srv.URL
	}
	if _, ok := cfg["poll_interval"]; !ok {
		cfg["poll_interval"] = "100ms"
	}
	b, _ := json.Marshal(cfg)
	ch, err := mastodon.New().Configure(t.Context(), sdk.ConfigureRequest{
		ChannelID: "test", Config: b, Secrets: map[string]string{mastodon.SecretToken: token},
		StateDir: t.TempDir(), Logger: testLogger(t)})
	if err == nil {
		t.Cleanup(func() { ch.Close() })
	}
	return ch, err
}

func mustConfigure(t *testing.T, srv *mastodontest.Server, token string, cfg map[string]any) sdk.Channel {
	t.Helper()
	ch, err := configure(t, srv, token, cfg)
	if err != nil {
		t.Fatalf("configure: %v", err)
	}
	return ch
}

// armored returns a fresh armor-like payload of n characters.
func armored(n int) string {
	raw := make([]byte, n)
	rand.Read(raw)
	return ("rm1" + base64.RawURLEncoding.EncodeToString(raw))[:n-1] + "."
}

// recorder subscribes and records every delivery.
type recorder struct {
	mu     sync.Mutex
	items  []sdk.Delivery
	empty  int
	cursor []byte
	cancel context.CancelFunc
	done   chan error
}

func subscribe(t *testing.T, ch sdk.Channel, cursor []byte) *recorder {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	r := &recorder{cancel: cancel, done: make(chan error, 1)}
	go func() {
		r.done <- ch.Subscribe(ctx, sdk.SubscribeRequest{Cursor: cursor}, sdk.SinkFunc(func(_ context.Context, d sdk.Delivery) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			if len(d.Data) == 0 {
				r.empty++
			} else {
				r.items = append(r.items, d)
			}
			r.cursor = d.Cursor
			return nil
		}))
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *recorder) stop(t *testing.T) {
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("subscribe returned %v", err)
		}
		r.done <- nil
	case <-time.After(5 * time.Second):
		t.Error("subscribe did not return within 5s of cancel")
	}
}

func (r *recorder) counts() (map[string]int, int, []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[string]int{}
	for _, d := range r.items {
		m[string(d.Data)]++
	}
	return m, r.empty, r.cursor
}

func publish(t *testing.T, ch sdk.Channel, items ...sdk.PublishItem) []sdk.PublishResult {
	t.Helper()
	resp, err := ch.Publish(t.Context(), sdk.PublishRequest{Items: items})
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	return resp.Results
}

func item(data string) sdk.PublishItem {
	k := make([]byte, 12)
	rand.Read(k)
	return sdk.PublishItem{Data: []byte(data), IdempotencyKey: base64.RawURLEncoding.EncodeToString(k)}
}

func health(ch sdk.Channel) sdk.Health { return ch.(sdk.Healther).Health(context.Background()) }

func TestConfigErrors(t *testing.T) {
	srv := mastodontest.New(mastodontest.Options{})
	t.Cleanup(srv.Close)
	alice := srv.AddAccount("alice")
	for _, tc := range []struct {
		name  string
		cfg   string
		token string
		field string
	}{
		{"empty", ``, alice.Token, "config is empty"},
		{"unknown field", `{"server":"` + srv.URL + `","accounts":["bob"],"acounts":1}`, alice.Token, "acounts"},
		{"no server", `{"accounts":["bob"]}`, alice.Token, "server:"},
		{"server not a URL", `{"server":"social.example","accounts":["bob"]}`, alice.Token, "server:"},
		{"no accounts", `{"server":"` + srv.URL + `"}`, alice.Token, "accounts:"},
		{"bad account", `{"server":"` + srv.URL + `","accounts":["bob smith"]}`, alice.Token, "accounts[0]"},
		{"negative max_payload", `{"server":"` + srv.URL + `","accounts":["bob"],"max_payload":-1}`, alice.Token, "max_payload"},
		{"tiny max_payload", `{"server":"` + srv.URL + `","accounts":["bob"],"max_payload":3}`, alice.Token, "max_payload"},
		{"bad poll_interval", `{"server":"` + srv.URL + `","accounts":["bob"],"poll_interval":"1ns"}`, alice.Token, "poll_interval"},
		{"bad stream", `{"server":"` + srv.URL + `","accounts":["bob"],"stream":"public"}`, alice.Token, "stream"},
		{"no token", `{"server":"` + srv.URL + `","accounts":["bob"]}`, "", `secret "token"`},
		{"too many accounts", `{"server":"` + srv.URL + `","accounts":[` + manyAccounts(45) + `]}`, alice.Token, "accounts:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := mastodon.New().Configure(t.Context(), sdk.ConfigureRequest{Config: json.RawMessage(tc.cfg),
				Secrets: map[string]string{mastodon.SecretToken: tc.token}, StateDir: t.TempDir()})
			if !errors.Is(err, sdk.ErrBadConfig) {
				t.Fatalf("got %v, want a bad-config error", err)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name %q", err, tc.field)
			}
		})
	}
}

func manyAccounts(n int) string {
	var s []string
	for i := range n {
		s = append(s, fmt.Sprintf(`"somebody%02d@far.example"`, i))
	}
	return strings.Join(s, ",")
}

func TestAuthFailed(t *testing.T) {
	srv := mastodontest.New(mastodontest.Options{})
	t.Cleanup(srv.Close)
	srv.AddAccount("alice")
	_, err := configure(t, srv, "not-a-token", map[string]any{"accounts": []string{"bob"}})
	if !errors.Is(err, sdk.ErrAuthFailed) {
		t.Fatalf("got %v, want auth failed", err)
	}
	if !strings.Contains(err.Error(), "remora channel add mastodon") {
		t.Errorf("error %q gives no advice", err)
	}
}

// TestOAuthFlow registers an app, has the user approve it (the fake's
// browser step), exchanges the out-of-band code and uses the token.
func TestOAuthFlow(t *testing.T) {
	srv := mastodontest.New(mastodontest.Options{})
	t.Cleanup(srv.Close)
	srv.AddAccount("alice")
	srv.AddAccount("bob")
	ctx := t.Context()
	app, err := mastodon.RegisterApp(ctx, srv.URL, "remora")
	if err != nil {
		t.Fatal(err)
	}
	if app.RedirectURI != mastodon.OOB || app.ClientID == "" || app.ClientSecret == "" {
		t.Fatalf("app %+v", app)
	}
	u := app.AuthCodeURL()
	for _, want := range []string{"response_type=code", "redirect_uri=urn%3Aietf%3Awg%3Aoauth%3A2.0%3Aoob", "client_id=" + app.ClientID, "scope=read+write"} {
		if !strings.Contains(u, want) {
			t.Errorf("auth URL %s lacks %s", u, want)
		}
	}
	code, err := srv.Authorize(u, "alice")
	if err != nil {
		t.Fatal(err)
	}
	token, err := app.ExchangeCode(ctx, code)
	if err != nil {
		t.Fatal(err)
	}
	// A code works once.
	if _, err := app.ExchangeCode(ctx, code); !errors.Is(err, sdk.ErrAuthFailed) {
		t.Errorf("second exchange of the same code: got %v, want auth failed", err)
	}
	if _, err := app.ExchangeCode(ctx, " "); !errors.Is(err, sdk.ErrNeedsUserAction) {
		t.Errorf("empty code: got %v, want needs user action", err)
	}
	ch := mustConfigure(t, srv, token, map[string]any{"accounts": []string{"bob"}})
	if res := publish(t, ch, item(armored(100))); res[0].Err != nil {
		t.Fatalf("publish with the new token: %v", res[0].Err)
	}
	if _, err := mastodon.RegisterApp(ctx, "social.example", "remora"); !errors.Is(err, sdk.ErrBadConfig) {
		t.Errorf("RegisterApp without scheme: got %v, want bad config", err)
	}
}

func TestMaxPayloadFromInstance(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     mastodontest.Options
		accounts []string
		want     int
	}{
		{"default 500, one local", mastodontest.Options{}, []string{"bob"}, 500 - len("@bob ")},
		// A remote mention counts only its local part.
		{"remote account counts @user", mastodontest.Options{}, []string{"bob@far.example"}, 500 - len("@bob ")},
		{"own domain written out", mastodontest.Options{}, []string{"bob@social.example", "carol@far.example"}, 500 - len("@bob @carol ")},
		{"max_characters 5000", mastodontest.Options{MaxCharacters: 5000}, []string{"bob"}, 5000 - len("@bob ")},
		{"v1 instance only", mastodontest.Options{MaxCharacters: 1000, NoV2Instance: true}, []string{"bob"}, 1000 - len("@bob ")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := mastodontest.New(tc.opts)
			t.Cleanup(srv.Close)
			alice := srv.AddAccount("alice")
			srv.AddAccount("bob")
			srv.AddRemote("bob@far.example")
			srv.AddRemote("carol@far.example")
			ch := mustConfigure(t, srv, alice.Token, map[string]any{"accounts": tc.accounts})
			caps := ch.Capabilities()
			if caps.MaxPayload != tc.want {
				t.Fatalf("max payload %d, want %d", caps.MaxPayload, tc.want)
			}
			// The server, counting by its own rule, takes exactly that much
			// and refuses one more.
			res := publish(t, ch, item(armored(caps.MaxPayload)), item(armored(caps.MaxPayload+1)))
			if res[0].Err != nil {
				t.Errorf("exactly max payload: %v", res[0].Err)
			}
			if !errors.Is(res[1].Err, sdk.ErrTooLarge) {
				t.Errorf("max payload + 1: got %v, want too large", res[1].Err)
			}
		})
	}
	t.Run("override", func(t *testing.T) {
		srv := mastodontest.New(mastodontest.Options{})
		t.Cleanup(srv.Close)
		alice := srv.AddAccount("alice")
		ch := mustConfigure(t, srv, alice.Token, map[string]any{"accounts": []string{"bob"}, "max_payload": 200})
		if got := ch.Capabilities().MaxPayload; got != 200 {
			t.Errorf("max payload %d, want 200", got)
		}
	})
}

// TestPostHoldsOnlyMentionsAndArmor reads the post as the recipient sees it.
func TestPostHoldsOnlyMentionsAndArmor(t *testing.T) {
	srv := mastodontest.New(mastodontest.Options{})
	t.Cleanup(srv.Close)
	alice, bob := srv.AddAccount("alice"), srv.AddAccount("bob")
	srv.AddAccount("carol")
	ch := mustConfigure(t, srv, alice.Token, map[string]any{"accounts": []string{"bob", "carol"}})
	data := armored(120)
	res := publish(t, ch, item(data))
	if res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	st := getStatus(t, srv, bob.Token, res[0].ID)
	if st.Visibility != "direct" {
		t.Errorf("visibility %q, want direct", st.Visibility)
	}
	if got, want := mastodon.PlainText(st.Content), "@bob @carol "+data; got != want {
		t.Errorf("post reads %q, want %q", got, want)
	}
	// Direct: a stranger cannot see it.
	dave := srv.AddAccount("dave")
	if code := statusCode(t, srv, dave.Token, res[0].ID); code != 404 {
		t.Errorf("stranger fetching the direct post: %d, want 404", code)
	}
	// To overrides the configured accounts.
	it := item(armored(50))
	it.To = []string{"carol"}
	res = publish(t, ch, it)
	if got := mastodon.PlainText(getStatus(t, srv, bob.Token, res[0].ID).Content); got != "" {
		t.Errorf("bob sees a post addressed to carol only: %q", got)
	}
}

func TestConcurrentPublishers(t *testing.T) {
	srv := mastodontest.New(mastodontest.Options{})
	t.Cleanup(srv.Close)
	alice, bob, carol := srv.AddAccount("alice"), srv.AddAccount("bob"), srv.AddAccount("carol")
	sub := mustConfigure(t, srv, bob.Token, map[string]any{"accounts": []string{"alice", "carol"}})
	pubs := []sdk.Channel{
		mustConfigure(t, srv, alice.Token, map[string]any{"accounts": []string{"bob"}}),
		mustConfigure(t, srv, carol.Token, map[string]any{"accounts": []string{"bob"}}),
	}
	r := subscribe(t, sub, nil)
	const writers, per = 4, 8
	var want []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for range per {
				d := armored(200)
				mu.Lock()
				want = append(want, d)
				mu.Unlock()
				resp, err := pubs[w%2].Publish(t.Context(), sdk.PublishRequest{Items: []sdk.PublishItem{item(d)}})
				if err != nil || resp.Results[0].Err != nil {
					t.Errorf("writer %d: %v %v", w, err, resp.Results)
				}
			}
		})
	}
	wg.Wait()
	testenv.WaitFor(t, "every item delivered", time.Minute, func() bool { got, _, _ := r.counts(); return len(got) == len(want) })
	// A duplicate would come before an item published after every other.
	last := armored(200)
	publish(t, pubs[0], item(last))
	testenv.WaitFor(t, "the last item delivered", time.Minute, func() bool { got, _, _ := r.counts(); return got[last] > 0 })
	got, _, _ := r.counts()
	for _, d := range want {
		if got[d] != 1 {
			t.Errorf("item delivered %d times", got[d])
		}
	}
}

// TestStreamOpenedLate: the server gives a new stream events a moment
// after the websocket opens (Mastodon's streaming server subscribes after
// the upgrade). Posts made in that moment, after the subscription's
// catch-up read, are in neither: the subscription catches up once more
// and delivers them (before, they were lost until the stream dropped).
func TestStreamOpenedLate(t *testing.T) {
	var (
		srv  *mastodontest.Server
		once sync.Once
		late = []string{armored(100), armored(100), armored(100)}
	)
	srv = mastodontest.New(mastodontest.Options{StreamOpened: func(username string) {
		once.Do(func() {
			deadline := time.Now().Add(30 * time.Second)
			for srv.NotificationReads() == 0 { // the catch-up after the dial
				if time.Now().After(deadline) {
					t.Error("no catch-up read after the stream opened")
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
			for _, d := range late {
				if _, err := srv.Post("alice", "@bob "+d, "direct"); err != nil {
					t.Error(err)
				}
			}
		})
	}})
	t.Cleanup(srv.Close)
	srv.AddAccount("alice")
	bob := srv.AddAccount("bob")
	sub := mustConfigure(t, srv, bob.Token, map[string]any{"accounts": []string{"alice"}})
	r := subscribe(t, sub, nil)
	testenv.WaitFor(t, "the posts made as the stream opened", 30*time.Second, func() bool {
		got, _, _ := r.counts()
		return got[late[0]] == 1 && got[late[1]] == 1 && got[late[2]] == 1
	})
	if n := srv.Streams(); n != 1 {
		t.Errorf("%d streams open, want the one (no reconnect needed)", n)
	}
}
