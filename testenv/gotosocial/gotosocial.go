// Package gotosocial gives integration tests accounts on the GoToSocial
// server that testenv/svc-gotosocial.sh starts (a real Mastodon-API
// server). Each account is created with the server's admin CLI and
// authorized through its OAuth authorization-code flow with the
// out-of-band redirect, the way a person does it in a browser: open the
// authorize page, sign in, allow, read the code.
//
// Every test gets fresh accounts, so tests running at the same time (or
// leftovers of earlier runs) never share a notification timeline.
package gotosocial

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/remora-p2p/remora/testenv"
)

// OOB is the out-of-band redirect URI.
const OOB = "urn:ietf:wg:oauth:2.0:oob"

// Server is the running GoToSocial server.
type Server struct {
	// URL is the server's base URL, http://localhost:PORT: its sign-in
	// cookie is bound to the host name localhost.
	URL    string
	bin    string
	config string
}

// Need returns the server, or skips t (fails it under
// REMORA_REQUIRE_SERVERS=1) when it is not running.
func Need(t testing.TB) *Server {
	t.Helper()
	v := testenv.Need(t, "gotosocial", "REMORA_GTS_URL", "REMORA_GTS_BIN", "REMORA_GTS_CONFIG")
	s := &Server{URL: v[0], bin: v[1], config: v[2]}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Get(s.URL + "/api/v1/instance")
	if err != nil {
		testenv.Missing(t, "gotosocial", "%s does not answer: %v", s.URL, err)
		return s
	}
	resp.Body.Close()
	return s
}

// Account is a local account with an access token (scopes read write).
type Account struct {
	Username string
	Email    string
	Password string
	Token    string
}

// NewAccount creates an account named prefix_XXXXXX (random suffix) with
// the admin CLI and authorizes it through the OAuth flow.
func (s *Server) NewAccount(t testing.TB, prefix string) Account {
	t.Helper()
	return s.NewAccounts(t, prefix)[0]
}

// NewAccounts creates one account per prefix, at the same time (the admin
// CLI takes seconds to start).
func (s *Server) NewAccounts(t testing.TB, prefixes ...string) []Account {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out := make([]Account, len(prefixes))
	errs := make([]error, len(prefixes))
	var wg sync.WaitGroup
	for i, prefix := range prefixes {
		wg.Go(func() { out[i], errs[i] = s.newAccount(ctx, prefix) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("gotosocial: %v", err)
	}
	return out
}

func (s *Server) newAccount(ctx context.Context, prefix string) (Account, error) {
	a := Account{Username: prefix + "_" + suffix()}
	a.Email = a.Username + "@example.org"
	pw := make([]byte, 18)
	rand.Read(pw)
	a.Password = "Pw!" + base64.RawURLEncoding.EncodeToString(pw) // the CLI refuses weak passwords
	out, err := exec.CommandContext(ctx, s.bin, "--config-path", s.config, "admin", "account", "create",
		"--username", a.Username, "--email", a.Email, "--password", a.Password).CombinedOutput()
	if err != nil {
		return a, fmt.Errorf("admin account create %s: %w\n%s", a.Username, err, out)
	}
	if a.Token, err = s.Token(ctx, a.Email, a.Password); err != nil {
		return a, fmt.Errorf("token for %s: %w", a.Username, err)
	}
	return a, nil
}

func suffix() string {
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 6)
	rand.Read(b)
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	return string(b)
}

// Token registers an app and runs the whole authorization-code flow for the
// account with email and password.
func (s *Server) Token(ctx context.Context, email, password string) (string, error) {
	var app struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	if err := s.postForm(ctx, "/api/v1/apps", url.Values{"client_name": {"testenv"}, "redirect_uris": {OOB}, "scopes": {"read write"}}, &app); err != nil {
		return "", fmt.Errorf("register app: %w", err)
	}
	q := url.Values{"client_id": {app.ClientID}, "redirect_uri": {OOB}, "response_type": {"code"}, "scope": {"read write"}}
	code, err := s.Approve(ctx, s.URL+"/oauth/authorize?"+q.Encode(), email, password)
	if err != nil {
		return "", err
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := s.postForm(ctx, "/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"client_id": {app.ClientID}, "client_secret": {app.ClientSecret}, "redirect_uri": {OOB}}, &tok); err != nil {
		return "", fmt.Errorf("exchange code: %w", err)
	}
	if tok.AccessToken == "" {
		return "", fmt.Errorf("exchange code: no access_token in the answer")
	}
	return tok.AccessToken, nil
}

// codeRE finds the code on the out-of-band page; the page may hold other
// <code> elements (a trusted-proxies hint).
var codeRE = regexp.MustCompile(`(?s)class="oob-token".*?<code>([^<]+)</code>`)

// Approve is the person at the browser: it opens authURL (an
// /oauth/authorize URL with the out-of-band redirect), signs in with email
// and password on the server's sign-in form, allows the app, and returns
// the code the server then shows.
func (s *Server) Approve(ctx context.Context, authURL, email, password string) (string, error) {
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: time.Minute}
	page := func(method, u string, form url.Values) (string, error) {
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequestWithContext(ctx, method, u, body)
		if err != nil {
			return "", err
		}
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		req.Header.Set("Accept", "text/html")
		resp, err := browser.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("%s %s: %s: %.300s", method, resp.Request.URL.Path, resp.Status, b)
		}
		return string(b), nil
	}
	// The authorize page redirects to the sign-in form.
	signIn, err := page(http.MethodGet, authURL, nil)
	if err != nil {
		return "", fmt.Errorf("open the authorize page: %w", err)
	}
	if !strings.Contains(signIn, `action="/auth/sign_in"`) {
		return "", fmt.Errorf("open the authorize page: no sign-in form in %.300s", signIn)
	}
	// Signing in redirects to the approval page.
	allow, err := page(http.MethodPost, s.URL+"/auth/sign_in", url.Values{"username": {email}, "password": {password}})
	if err != nil {
		return "", fmt.Errorf("sign in: %w", err)
	}
	if !strings.Contains(allow, `action="/oauth/authorize"`) {
		return "", fmt.Errorf("sign in: no approval form in %.300s", allow)
	}
	// Allowing redirects to the page that shows the code.
	shown, err := page(http.MethodPost, s.URL+"/oauth/authorize", url.Values{})
	if err != nil {
		return "", fmt.Errorf("allow: %w", err)
	}
	m := codeRE.FindStringSubmatch(shown)
	if m == nil {
		return "", fmt.Errorf("allow: no code shown in %.300s", shown)
	}
	return html.UnescapeString(m[1]), nil
}

func (s *Server) postForm(ctx context.Context, path string, form url.Values, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %s: %.300s", path, resp.Status, b)
	}
	return json.Unmarshal(b, out)
}

// Do sends an API request as the holder of token and decodes a JSON answer
// into out (when not nil). Tests use it for what the adapter does not do:
// account settings, reading a status as its recipient.
func (s *Server) Do(ctx context.Context, token, method, path string, form url.Values, out any) (int, error) {
	var body io.Reader
	if form != nil && method != http.MethodGet {
		body = strings.NewReader(form.Encode())
	} else if form != nil {
		path += "?" + form.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, body)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, fmt.Errorf("%s %s: %s: %.300s", method, path, resp.Status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}
