package mastodon

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/testenv/gotosocial"
)

// loseAnswer fails the next POST /api/v1/statuses: after the server
// answered (the answer is lost on the way back) or before sending it (the
// request never arrived).
type loseAnswer struct {
	base   http.RoundTripper
	armed  atomic.Int32 // 1: lose the answer, 2: lose the request
	posted atomic.Int32 // posts that reached the server
}

var errLost = errors.New("connection reset (test: answer lost)")

func (l *loseAnswer) RoundTrip(req *http.Request) (*http.Response, error) {
	post := req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/api/v1/statuses")
	mode := int32(0)
	if post {
		mode = l.armed.Swap(0)
	}
	if mode == 2 {
		return nil, errLost
	}
	resp, err := l.base.RoundTrip(req)
	if err == nil && post {
		l.posted.Add(1)
	}
	if mode == 1 && err == nil {
		resp.Body.Close()
		return nil, errLost
	}
	return resp, err
}

// ownPosts counts acct's statuses whose text carries data, as the server
// lists them.
func ownPosts(t *testing.T, srv *gotosocial.Server, token, data string) int {
	t.Helper()
	var me struct {
		ID string `json:"id"`
	}
	if _, err := srv.Do(t.Context(), token, http.MethodGet, "/api/v1/accounts/verify_credentials", nil, &me); err != nil {
		t.Fatal(err)
	}
	var sts []status
	if _, err := srv.Do(t.Context(), token, http.MethodGet, "/api/v1/accounts/"+me.ID+"/statuses", url.Values{"limit": {"40"}}, &sts); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, st := range sts {
		if b, ok := body(st.plain()); ok && b == data {
			n++
		}
	}
	return n
}

// TestGoToSocialLostAnswer: GoToSocial ignores Idempotency-Key, so a
// publish whose answer was lost and is retried would post twice. The
// adapter looks for its post among its own statuses before posting again.
func TestGoToSocialLostAnswer(t *testing.T) {
	srv := gotosocial.Need(t)
	accts := srv.NewAccounts(t, "alice", "bob")
	alice, bob := accts[0], accts[1]
	ctx := t.Context()

	// Control: the same Idempotency-Key twice is two posts on this server.
	post := func(key, text string) string {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/api/v1/statuses",
			strings.NewReader(url.Values{"status": {text}, "visibility": {"direct"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+alice.Token)
		req.Header.Set("Idempotency-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st status
		json.NewDecoder(resp.Body).Decode(&st)
		return st.ID
	}
	if a, b := post("control-key", "@"+bob.Username+" once?"), post("control-key", "@"+bob.Username+" once?"); a == b {
		t.Logf("the server deduplicated a repeated Idempotency-Key (%s): the adapter's check is a second guard there", a)
	}

	dir := t.TempDir()
	cfg, _ := json.Marshal(map[string]any{"server": srv.URL, "accounts": []string{bob.Username}})
	open := func() *channel {
		t.Helper()
		ch, err := New().Configure(ctx, sdk.ConfigureRequest{Config: cfg,
			Secrets: map[string]string{SecretToken: alice.Token}, StateDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ch.Close() })
		return ch.(*channel)
	}
	c := open()
	if c.inst.software != softGoToSocial || c.inst.honorsIdempotencyKey() {
		t.Fatalf("detected %s (honours Idempotency-Key: %v), want gotosocial (no)", c.inst.software, c.inst.honorsIdempotencyKey())
	}
	lose := &loseAnswer{base: c.tr.base}
	c.tr.base = lose
	raw := make([]byte, 90)
	rand.Read(raw)
	data := "rm1" + base64.RawURLEncoding.EncodeToString(raw) + "."
	it := sdk.PublishItem{Data: []byte(data), IdempotencyKey: "lost-answer-1"}
	pub := func(c *channel, it sdk.PublishItem) (string, error) {
		t.Helper()
		resp, err := c.Publish(ctx, sdk.PublishRequest{Items: []sdk.PublishItem{it}})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Results[0].ID, resp.Results[0].Err
	}

	lose.armed.Store(1)
	if _, err := pub(c, it); !sdk.CodeOf(err).Retryable() {
		t.Fatalf("publish whose answer was lost: %v, want a retryable error", err)
	}
	if n := ownPosts(t, srv, alice.Token, data); n != 1 {
		t.Fatalf("after the lost answer the server holds %d posts of the item, want 1", n)
	}
	id, err := pub(c, it)
	if err != nil {
		t.Fatal(err)
	}
	if n := ownPosts(t, srv, alice.Token, data); n != 1 || lose.posted.Load() != 1 {
		t.Fatalf("after the retry: %d posts of the item (%d POSTs), want 1", n, lose.posted.Load())
	}
	if h := c.Health(ctx); h.Counters["retry_checks"] != 1 || h.Counters["retry_found"] != 1 {
		t.Errorf("counters %v: want one check that found the post", h.Counters)
	}

	// After a restart the journal answers with the ID, without a request.
	c.Close()
	c2 := open()
	before := c2.tr.requests.Load()
	if again, err := pub(c2, it); err != nil || again != id || c2.tr.requests.Load() != before {
		t.Fatalf("after a restart: %s, %v (%d requests), want %s from the journal", again, err, c2.tr.requests.Load()-before, id)
	}

	// A request lost before it arrived is posted on the retry, once.
	lose2 := &loseAnswer{base: c2.tr.base}
	c2.tr.base = lose2
	rand.Read(raw)
	data2 := "rm1" + base64.RawURLEncoding.EncodeToString(raw) + "."
	it2 := sdk.PublishItem{Data: []byte(data2), IdempotencyKey: "lost-request-1"}
	lose2.armed.Store(2)
	if _, err := pub(c2, it2); !sdk.CodeOf(err).Retryable() {
		t.Fatalf("publish whose request was lost: %v, want a retryable error", err)
	}
	if _, err := pub(c2, it2); err != nil {
		t.Fatal(err)
	}
	if n := ownPosts(t, srv, alice.Token, data2); n != 1 {
		t.Errorf("a request lost before the server: %d posts after the retry, want 1", n)
	}
}
