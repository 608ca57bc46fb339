package mastodontest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// OOB is the out-of-band redirect URI: the authorization code is shown to
// the user instead of being sent to a redirect.
const OOB = "urn:ietf:wg:oauth:2.0:oob"

// Options tune a Server. Zero values take Mastodon's defaults.
type Options struct {
	// Domain is the instance's domain (default "social.example").
	Domain string
	// MaxCharacters is configuration.statuses.max_characters (default 500).
	MaxCharacters int
	// RateLimit is the number of authenticated API requests per token and
	// RateWindow (default 300 per 5 minutes, Mastodon's general limit).
	RateLimit  int
	RateWindow time.Duration
	// StatusLimit is the number of statuses an account may create per
	// StatusWindow (default 300 per 3 hours, Mastodon's "statuses" rate
	// limit family); POST /api/v1/statuses reports it in X-RateLimit-*.
	StatusLimit  int
	StatusWindow time.Duration
	// DeleteLimit is the number of DELETE /api/v1/statuses/:id per
	// DeleteWindow (default 30 per 30 minutes); its headers appear only on
	// the 429, as with Mastodon's rack-attack throttle.
	DeleteLimit  int
	DeleteWindow time.Duration
	// NoV2Instance makes /api/v2/instance a 404, as on servers older than
	// Mastodon 4.0.
	NoV2Instance bool
	// StreamingURL is advertised as the streaming API's base URL
	// (configuration.urls.streaming, urls.streaming_api); default none, so
	// clients use the server's URL. A server behind a proxy may advertise
	// a URL that does not work (GoToSocial: wss://HOST whatever its scheme
	// and port).
	StreamingURL string
	// StreamOpened, if set, runs after a streaming websocket is upgraded
	// and before the stream is given events, as on Mastodon, whose
	// streaming server subscribes to the account's events a moment after
	// the upgrade: a notification made meanwhile is not streamed.
	StreamOpened func(username string)
}

// Account is an account on the fake server.
type Account struct {
	ID       string
	Username string
	// Acct is "username" for local accounts, "username@domain" for remote.
	Acct string
	// Token is a valid access token (local accounts only).
	Token  string
	Domain string
}

type account struct {
	Account
	local bool
}

type status struct {
	id         string
	author     *account
	text       string
	visibility string
	mentions   []*account
	created    time.Time
	idemKey    string
}

type notification struct {
	id      string
	seq     int64
	typ     string
	owner   *account
	from    *account
	status  *status
	created time.Time
}

type app struct {
	id, name, clientID, secret, redirect, scopes string
}

type grant struct {
	code     string
	app      *app
	account  *account
	redirect string
}

type rateState struct {
	start time.Time
	used  int
}

type idemEntry struct {
	status *status
	at     time.Time
}

// Server is a fake Mastodon-compatible server.
type Server struct {
	opts Options
	srv  *httptest.Server
	// URL is the server's base URL (http://127.0.0.1:port).
	URL string

	requests     atomic.Int64
	notifReads   atomic.Int64
	posts        atomic.Int64
	limited      atomic.Int64
	streamingOff atomic.Bool

	mu       sync.Mutex
	offset   time.Duration
	accounts map[string]*account // by ID
	byAcct   map[string]*account // by lowercase acct
	tokens   map[string]*account
	statuses map[string]*status
	notifs   []*notification
	notifSeq int64
	idSeq    uint16
	accSeq   int64
	apps     map[string]*app // by client ID
	grants   map[string]*grant
	idem     map[string]idemEntry // account ID + "\x00" + key
	rate     map[string]*rateState
	statusRL map[string]*rateState // by account ID
	deleteRL map[string]*rateState // by account ID
	streams  map[*stream]struct{}
}

type stream struct {
	conn    *websocket.Conn
	account *account
	kind    string // "user" or "direct"
	mu      sync.Mutex
}

// New starts a fake server; it stops when the test ends.
func New(opts Options) *Server {
	if opts.Domain == "" {
		opts.Domain = "social.example"
	}
	if opts.MaxCharacters <= 0 {
		opts.MaxCharacters = 500
	}
	if opts.RateLimit <= 0 {
		opts.RateLimit = 300
	}
	if opts.RateWindow <= 0 {
		opts.RateWindow = 5 * time.Minute
	}
	if opts.StatusLimit <= 0 {
		opts.StatusLimit = 300
	}
	if opts.StatusWindow <= 0 {
		opts.StatusWindow = 3 * time.Hour
	}
	if opts.DeleteLimit <= 0 {
		opts.DeleteLimit = 30
	}
	if opts.DeleteWindow <= 0 {
		opts.DeleteWindow = 30 * time.Minute
	}
	s := &Server{
		opts:     opts,
		accounts: map[string]*account{},
		byAcct:   map[string]*account{},
		tokens:   map[string]*account{},
		statuses: map[string]*status{},
		apps:     map[string]*app{},
		grants:   map[string]*grant{},
		idem:     map[string]idemEntry{},
		rate:     map[string]*rateState{},
		statusRL: map[string]*rateState{},
		deleteRL: map[string]*rateState{},
		streams:  map[*stream]struct{}{},
		notifSeq: 1000,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/apps", s.handleApps)
	mux.HandleFunc("GET /oauth/authorize", s.handleAuthorize)
	mux.HandleFunc("POST /oauth/token", s.handleToken)
	mux.HandleFunc("GET /api/v1/instance", s.optionalAuth(s.handleInstanceV1))
	mux.HandleFunc("GET /api/v2/instance", s.optionalAuth(s.handleInstanceV2))
	mux.HandleFunc("GET /api/v1/accounts/verify_credentials", s.api(s.handleVerify))
	mux.HandleFunc("GET /api/v1/accounts/lookup", s.api(s.handleLookup))
	mux.HandleFunc("GET /api/v1/accounts/{id}/statuses", s.api(s.handleAccountStatuses))
	mux.HandleFunc("POST /api/v1/statuses", s.api(s.handlePost))
	mux.HandleFunc("GET /api/v1/statuses/{id}", s.api(s.handleGetStatus))
	mux.HandleFunc("DELETE /api/v1/statuses/{id}", s.api(s.handleDelete))
	mux.HandleFunc("GET /api/v1/notifications", s.api(s.handleNotifications))
	mux.HandleFunc("GET /api/v1/streaming", s.handleStreaming)
	s.srv = httptest.NewServer(mux)
	s.URL = s.srv.URL
	return s
}

// Close stops the server and cuts every stream.
func (s *Server) Close() {
	s.DropStreams()
	s.srv.Close()
}

// Requests is the number of authenticated API requests served (streaming
// connections not included), 429s included.
func (s *Server) Requests() int64 { return s.requests.Load() }

// NotificationReads is the number of GET /api/v1/notifications answered.
func (s *Server) NotificationReads() int64 { return s.notifReads.Load() }

// Limited is the number of requests answered 429.
func (s *Server) Limited() int64 { return s.limited.Load() }

// Posts is the number of statuses created through the API.
func (s *Server) Posts() int64 { return s.posts.Load() }

// Advance moves the server's clock forward (idempotency keys and rate
// windows expire by it; created_at of new statuses follows it).
func (s *Server) Advance(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.offset += d
}

func (s *Server) now() time.Time { return time.Now().Add(s.offset) }

// SetMaxCharacters changes the instance's configuration.statuses.max_characters
// (clients read it when they start).
func (s *Server) SetMaxCharacters(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.MaxCharacters = n
}

// Stored returns what the server keeps of every status not deleted: its
// source text and the status as the API shows it (JSON), for tests that
// check what a server operator could read.
func (s *Server) Stored() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][]byte
	for _, st := range s.statuses {
		b, _ := json.Marshal(s.statusJSON(st))
		out = append(out, []byte(st.text), b)
	}
	return out
}

// Domain is the instance's domain.
func (s *Server) Domain() string { return s.opts.Domain }

// AddAccount creates a local account with an access token.
func (s *Server) AddAccount(username string) Account {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.addAccountLocked(username, "")
	a.Token = randHex(16)
	s.tokens[a.Token] = a
	return a.Account
}

// AddRemote creates a remote account known to this server
// ("username@domain").
func (s *Server) AddRemote(acct string) Account {
	user, domain, _ := strings.Cut(acct, "@")
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.byAcct[strings.ToLower(acct)]; ok {
		return a.Account
	}
	return s.addAccountLocked(user, domain).Account
}

func (s *Server) addAccountLocked(user, domain string) *account {
	s.accSeq++
	a := &account{Account: Account{ID: strconv.FormatInt(100000+s.accSeq, 10), Username: user, Acct: user, Domain: domain}}
	a.local = domain == ""
	if !a.local {
		a.Acct = user + "@" + domain
	} else {
		a.Domain = s.opts.Domain
	}
	s.accounts[a.ID] = a
	s.byAcct[strings.ToLower(a.Acct)] = a
	return a
}

// Post creates a status as the local account username, bypassing the API
// (no rate limit, no counting): ordinary posts by strangers and the like.
func (s *Server) Post(username, text, visibility string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.byAcct[strings.ToLower(username)]
	if !ok {
		return "", fmt.Errorf("mastodontest: no account %q", username)
	}
	st := s.createLocked(a, text, visibility, s.now())
	return st.id, nil
}

// Federate delivers a status from a remote account ("user@domain", created
// on first use) created at createdAt, arriving now: its ID derives from
// createdAt, so it sorts below statuses created after it but seen before;
// its notifications get fresh IDs in arrival order, as on Mastodon.
func (s *Server) Federate(fromAcct, text, visibility string, createdAt time.Time) string {
	user, domain, _ := strings.Cut(fromAcct, "@")
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.byAcct[strings.ToLower(fromAcct)]
	if !ok {
		a = s.addAccountLocked(user, domain)
	}
	return s.createLocked(a, text, visibility, createdAt).id
}

// DeleteStatus deletes a status as its author would, bypassing the API.
func (s *Server) DeleteStatus(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.statuses[id]; ok {
		s.deleteLocked(st)
	}
}

// DropStreams closes every open streaming connection, as a restarting
// server or a broken network would.
func (s *Server) DropStreams() {
	s.mu.Lock()
	streams := s.streams
	s.streams = map[*stream]struct{}{}
	s.mu.Unlock()
	for st := range streams {
		st.conn.Close()
	}
}

// SetStreaming turns the streaming endpoint on or off (off: 503, as when
// the streaming server is down or not proxied); turning it off also cuts
// open streams.
func (s *Server) SetStreaming(on bool) {
	s.streamingOff.Store(!on)
	if !on {
		s.DropStreams()
	}
}

// Streams is the number of open streaming connections.
func (s *Server) Streams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.streams)
}

// Authorize is the user's browser step of the authorization-code flow: the
// account username, logged in, opens authURL and approves; with the
// out-of-band redirect the page shows the code, which Authorize returns.
func (s *Server) Authorize(authURL, username string) (string, error) {
	req, err := http.NewRequest(http.MethodGet, authURL, nil)
	if err != nil {
		return "", fmt.Errorf("mastodontest: authorize: %w", err)
	}
	req.Header.Set("X-Fake-Session", username)
	resp, err := s.srv.Client().Do(req)
	if err != nil {
		return "", fmt.Errorf("mastodontest: authorize: %w", err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("mastodontest: authorize: %s: %s", resp.Status, b.String())
	}
	m := regexp.MustCompile(`<code>([^<]+)</code>`).FindStringSubmatch(b.String())
	if m == nil {
		return "", fmt.Errorf("mastodontest: authorize: no code on the page")
	}
	return m[1], nil
}

// ---- IDs, counting, rendering

// snowflake returns a Mastodon-style ID for t: milliseconds << 16 | seq.
func (s *Server) snowflake(t time.Time) string {
	s.idSeq++
	id := t.UnixMilli()<<16 | int64(s.idSeq)
	for {
		if _, taken := s.statuses[strconv.FormatInt(id, 10)]; !taken {
			break
		}
		id++
	}
	return strconv.FormatInt(id, 10)
}

// mentionRE is Mastodon's Account::MENTION_RE, simplified: @user or
// @user@domain after start or a non-word character.
var mentionRE = regexp.MustCompile(`(?:^|[^\w/\\])@([a-zA-Z0-9_]+(?:[a-zA-Z0-9_.-]+[a-zA-Z0-9_]+)?)(?:@([a-zA-Z0-9.-]+\.[a-zA-Z0-9]+))?`)

var urlRE = regexp.MustCompile(`https?://[^\s<>"]+`)

// CountCharacters counts text as Mastodon does: code points, where every
// URL counts 23 and a mention of a remote account counts only "@username".
func CountCharacters(text string) int {
	t := urlRE.ReplaceAllString(text, strings.Repeat("x", 23))
	t = mentionRE.ReplaceAllStringFunc(t, func(m string) string {
		sub := mentionRE.FindStringSubmatch(m)
		lead := m[:strings.Index(m, "@")]
		return lead + "@" + sub[1]
	})
	return utf8.RuneCountInString(t)
}

func (s *Server) resolveMentions(text string) []*account {
	var out []*account
	seen := map[*account]bool{}
	for _, m := range mentionRE.FindAllStringSubmatch(text, -1) {
		acct := m[1]
		if m[2] != "" && !strings.EqualFold(m[2], s.opts.Domain) {
			acct += "@" + m[2]
		}
		a, ok := s.byAcct[strings.ToLower(acct)]
		if !ok {
			continue // Mastodon resolves remote accounts over WebFinger; unknown ones stay plain text
		}
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out
}

// render turns text into Mastodon's HTML: paragraphs, <br />, escaped text,
// h-card mention links and URL links.
func (s *Server) render(text string, mentions []*account) string {
	byName := map[string]*account{}
	for _, a := range mentions {
		byName[strings.ToLower(a.Acct)] = a
		if a.local {
			byName[strings.ToLower(a.Username+"@"+s.opts.Domain)] = a
		}
	}
	var b strings.Builder
	for i, para := range strings.Split(text, "\n\n") {
		if i > 0 {
			b.WriteString("")
		}
		b.WriteString("<p>")
		for j, line := range strings.Split(para, "\n") {
			if j > 0 {
				b.WriteString("<br />")
			}
			b.WriteString(s.renderLine(line, byName))
		}
		b.WriteString("</p>")
	}
	return b.String()
}

func (s *Server) renderLine(line string, byName map[string]*account) string {
	var b strings.Builder
	last := 0
	for _, m := range mentionRE.FindAllStringSubmatchIndex(line, -1) {
		at := strings.Index(line[m[0]:m[1]], "@") + m[0]
		name := line[m[2]:m[3]]
		full := name
		if m[4] >= 0 {
			full += "@" + line[m[4]:m[5]]
		}
		a, ok := byName[strings.ToLower(full)]
		if !ok {
			continue
		}
		b.WriteString(linkify(line[last:at]))
		fmt.Fprintf(&b, `<span class="h-card" translate="no"><a href="https://%s/@%s" class="u-url mention">@<span>%s</span></a></span>`,
			a.Domain, html.EscapeString(a.Username), html.EscapeString(a.Username))
		last = m[1]
	}
	b.WriteString(linkify(line[last:]))
	return b.String()
}

func linkify(text string) string {
	var b strings.Builder
	last := 0
	for _, m := range urlRE.FindAllStringIndex(text, -1) {
		b.WriteString(html.EscapeString(text[last:m[0]]))
		u := text[m[0]:m[1]]
		fmt.Fprintf(&b, `<a href="%s" target="_blank" rel="nofollow noopener noreferrer"><span class="invisible">https://</span><span class="">%s</span></a>`,
			html.EscapeString(u), html.EscapeString(strings.TrimPrefix(strings.TrimPrefix(u, "https://"), "http://")))
		last = m[1]
	}
	b.WriteString(html.EscapeString(text[last:]))
	return b.String()
}

// createLocked stores a status, notifies the mentioned local accounts and
// streams the events.
func (s *Server) createLocked(a *account, text, visibility string, created time.Time) *status {
	if visibility == "" {
		visibility = "public"
	}
	st := &status{id: s.snowflake(created), author: a, text: text, visibility: visibility,
		mentions: s.resolveMentions(text), created: created}
	s.statuses[st.id] = st
	now := s.now()
	for _, m := range st.mentions {
		if !m.local || m == a {
			continue
		}
		s.notifSeq++
		n := &notification{id: strconv.FormatInt(s.notifSeq, 10), seq: s.notifSeq, typ: "mention",
			owner: m, from: a, status: st, created: now}
		s.notifs = append(s.notifs, n)
		s.pushLocked(m, "user", "notification", s.notifJSON(n))
		if st.visibility == "direct" {
			s.pushLocked(m, "direct", "conversation", s.conversationJSON(st, m))
		}
	}
	if a.local {
		s.pushLocked(a, "user", "update", s.statusJSON(st))
		if st.visibility == "direct" {
			s.pushLocked(a, "direct", "conversation", s.conversationJSON(st, a))
		}
	}
	return st
}

func (s *Server) deleteLocked(st *status) {
	delete(s.statuses, st.id)
	kept := s.notifs[:0]
	for _, n := range s.notifs {
		if n.status != st {
			kept = append(kept, n)
		}
	}
	for i := len(kept); i < len(s.notifs); i++ {
		s.notifs[i] = nil
	}
	s.notifs = kept
	for _, a := range append([]*account{st.author}, st.mentions...) {
		if a.local {
			s.pushLocked(a, "user", "delete", st.id)
			s.pushLocked(a, "direct", "delete", st.id)
		}
	}
}

func (s *Server) visible(st *status, viewer *account) bool {
	switch st.visibility {
	case "public", "unlisted":
		return true
	}
	if viewer == nil {
		return false
	}
	if st.author == viewer {
		return true
	}
	for _, m := range st.mentions {
		if m == viewer {
			return true
		}
	}
	return false
}

// ---- JSON

func (s *Server) accountJSON(a *account) map[string]any {
	return map[string]any{
		"id": a.ID, "username": a.Username, "acct": a.Acct, "display_name": a.Username,
		"url": "https://" + a.Domain + "/@" + a.Username, "locked": false, "bot": false,
		"created_at": "2024-01-01T00:00:00.000Z", "note": "", "avatar": "", "header": "",
		"followers_count": 0, "following_count": 0, "statuses_count": 0, "emojis": []any{}, "fields": []any{},
	}
}

func (s *Server) statusJSON(st *status) map[string]any {
	ments := []any{}
	for _, m := range st.mentions {
		ments = append(ments, map[string]any{"id": m.ID, "username": m.Username, "acct": m.Acct,
			"url": "https://" + m.Domain + "/@" + m.Username})
	}
	return map[string]any{
		"id": st.id, "created_at": st.created.UTC().Format("2006-01-02T15:04:05.000Z"),
		"in_reply_to_id": nil, "in_reply_to_account_id": nil, "sensitive": false, "spoiler_text": "",
		"visibility": st.visibility, "language": "en",
		"uri":     "https://" + st.author.Domain + "/users/" + st.author.Username + "/statuses/" + st.id,
		"url":     "https://" + st.author.Domain + "/@" + st.author.Username + "/" + st.id,
		"content": s.render(st.text, st.mentions), "account": s.accountJSON(st.author),
		"mentions": ments, "tags": []any{}, "emojis": []any{}, "media_attachments": []any{},
		"replies_count": 0, "reblogs_count": 0, "favourites_count": 0, "reblog": nil, "card": nil, "poll": nil,
	}
}

func (s *Server) notifJSON(n *notification) map[string]any {
	return map[string]any{"id": n.id, "type": n.typ, "created_at": n.created.UTC().Format("2006-01-02T15:04:05.000Z"),
		"account": s.accountJSON(n.from), "status": s.statusJSON(n.status)}
}

func (s *Server) conversationJSON(st *status, viewer *account) map[string]any {
	var others []any
	for _, a := range append([]*account{st.author}, st.mentions...) {
		if a != viewer {
			others = append(others, s.accountJSON(a))
		}
	}
	return map[string]any{"id": "c" + st.id, "unread": true, "accounts": others, "last_status": s.statusJSON(st)}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func apiError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// ---- middleware: auth and rate limit

type authedHandler func(w http.ResponseWriter, r *http.Request, a *account)

// api authenticates the bearer token and applies the rate limit, with
// Mastodon's headers on every response.
func (s *Server) api(h authedHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		s.mu.Lock()
		a, ok := s.tokens[tok]
		if !ok {
			s.mu.Unlock()
			w.Header().Set("WWW-Authenticate", `Bearer realm="Doorkeeper", error="invalid_token", error_description="The access token is invalid"`)
			apiError(w, http.StatusUnauthorized, "The access token is invalid")
			return
		}
		now := s.now()
		rs := s.rate[tok]
		if rs == nil || now.Sub(rs.start) >= s.opts.RateWindow {
			// Mastodon's windows are aligned to the period.
			start := now.Truncate(s.opts.RateWindow)
			rs = &rateState{start: start}
			s.rate[tok] = rs
		}
		reset := rs.start.Add(s.opts.RateWindow)
		w.Header().Set("X-RateLimit-Limit", strconv.Itoa(s.opts.RateLimit))
		w.Header().Set("X-RateLimit-Reset", reset.UTC().Format("2006-01-02T15:04:05.000000Z"))
		if rs.used >= s.opts.RateLimit {
			s.mu.Unlock()
			s.limited.Add(1)
			w.Header().Set("X-RateLimit-Remaining", "0")
			w.Header().Set("Retry-After", strconv.Itoa(int(reset.Sub(now).Seconds()+1)))
			apiError(w, http.StatusTooManyRequests, "Too many requests")
			return
		}
		rs.used++
		w.Header().Set("X-RateLimit-Remaining", strconv.Itoa(s.opts.RateLimit-rs.used))
		s.mu.Unlock()
		h(w, r, a)
	}
}

// optionalAuth serves public endpoints: anonymous requests pass (Mastodon
// limits those per IP, which this fake does not model); a request with a
// token is authenticated and counted like any other API request.
func (s *Server) optionalAuth(h http.HandlerFunc) http.HandlerFunc {
	authed := s.api(func(w http.ResponseWriter, r *http.Request, _ *account) { h(w, r) })
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			h(w, r)
			return
		}
		authed(w, r)
	}
}

// ---- apps and OAuth

func form(r *http.Request) url.Values {
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		var m map[string]any
		json.NewDecoder(r.Body).Decode(&m)
		v := url.Values{}
		for k, x := range m {
			v.Set(k, fmt.Sprint(x))
		}
		return v
	}
	r.ParseForm()
	return r.Form
}

func (s *Server) handleApps(w http.ResponseWriter, r *http.Request) {
	f := form(r)
	name, redirect := f.Get("client_name"), f.Get("redirect_uris")
	if name == "" || redirect == "" {
		apiError(w, http.StatusUnprocessableEntity, "Validation failed: Application name can't be blank, Redirect URI can't be blank")
		return
	}
	scopes := f.Get("scopes")
	if scopes == "" {
		scopes = "read"
	}
	s.mu.Lock()
	a := &app{id: strconv.Itoa(len(s.apps) + 1), name: name, clientID: randHex(16), secret: randHex(16), redirect: redirect, scopes: scopes}
	s.apps[a.clientID] = a
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"id": a.id, "name": a.name, "website": nil,
		"redirect_uri": a.redirect, "client_id": a.clientID, "client_secret": a.secret, "vapid_key": ""})
}

func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.apps[q.Get("client_id")]
	switch {
	case !ok:
		http.Error(w, "Client authentication failed due to unknown client", http.StatusUnauthorized)
		return
	case q.Get("response_type") != "code":
		http.Error(w, "The authorization server does not support this response type.", http.StatusBadRequest)
		return
	case q.Get("redirect_uri") != a.redirect:
		http.Error(w, "The requested redirect uri is malformed or doesn't match client redirect URI.", http.StatusBadRequest)
		return
	}
	user, ok := s.byAcct[strings.ToLower(r.Header.Get("X-Fake-Session"))]
	if !ok || !user.local {
		// A real server shows its login form here.
		http.Error(w, "log in first", http.StatusUnauthorized)
		return
	}
	g := &grant{code: randHex(20), app: a, account: user, redirect: a.redirect}
	s.grants[g.code] = g
	if a.redirect != OOB {
		http.Redirect(w, r, a.redirect+"?code="+g.code, http.StatusFound)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, "<html><body><p>Copy this authorization code and paste it to the application.</p><code>%s</code></body></html>", g.code)
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	f := form(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.apps[f.Get("client_id")]
	if !ok || a.secret != f.Get("client_secret") {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client",
			"error_description": "Client authentication failed due to unknown client, no client authentication included, or unsupported authentication method."})
		return
	}
	switch f.Get("grant_type") {
	case "authorization_code":
		g, ok := s.grants[f.Get("code")]
		if !ok || g.app != a || g.redirect != f.Get("redirect_uri") {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant",
				"error_description": "The provided authorization grant is invalid, expired, revoked, does not match the redirection URI used in the authorization request, or was issued to another client."})
			return
		}
		delete(s.grants, g.code)
		tok := randHex(16)
		s.tokens[tok] = g.account
		writeJSON(w, http.StatusOK, map[string]any{"access_token": tok, "token_type": "Bearer", "scope": a.scopes, "created_at": s.now().Unix()})
	default:
		// GoToSocial offers no password grant; neither does this fake.
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type",
			"error_description": "The authorization grant type is not supported by the authorization server."})
	}
}

// ---- instance

func (s *Server) handleInstanceV2(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.NoV2Instance {
		apiError(w, http.StatusNotFound, "Record not found")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"domain": s.opts.Domain, "title": "fake", "version": "4.3.0",
		"source_url": "https://github.com/mastodon/mastodon",
		"configuration": map[string]any{"statuses": map[string]any{"max_characters": s.opts.MaxCharacters,
			"max_media_attachments": 4, "characters_reserved_per_url": 23},
			"urls": map[string]any{"streaming": s.opts.StreamingURL}}})
}

func (s *Server) handleInstanceV1(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	urls := map[string]string{}
	if s.opts.StreamingURL != "" {
		urls["streaming_api"] = s.opts.StreamingURL
	}
	writeJSON(w, http.StatusOK, map[string]any{"uri": s.opts.Domain, "title": "fake", "version": "3.5.3", "urls": urls,
		"configuration": map[string]any{"statuses": map[string]any{"max_characters": s.opts.MaxCharacters,
			"max_media_attachments": 4, "characters_reserved_per_url": 23}}})
}

// ---- accounts

func (s *Server) handleVerify(w http.ResponseWriter, r *http.Request, a *account) {
	s.mu.Lock()
	defer s.mu.Unlock()
	writeJSON(w, http.StatusOK, s.accountJSON(a))
}

func (s *Server) handleLookup(w http.ResponseWriter, r *http.Request, _ *account) {
	acct := strings.TrimPrefix(r.URL.Query().Get("acct"), "@")
	if u, d, ok := strings.Cut(acct, "@"); ok && strings.EqualFold(d, s.opts.Domain) {
		acct = u
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.byAcct[strings.ToLower(acct)]
	if !ok {
		apiError(w, http.StatusNotFound, "Record not found")
		return
	}
	writeJSON(w, http.StatusOK, s.accountJSON(a))
}

func (s *Server) handleAccountStatuses(w http.ResponseWriter, r *http.Request, viewer *account) {
	s.mu.Lock()
	defer s.mu.Unlock()
	owner, ok := s.accounts[r.PathValue("id")]
	if !ok {
		apiError(w, http.StatusNotFound, "Record not found")
		return
	}
	var ids []string
	for _, st := range s.statuses {
		if st.author == owner && s.visible(st, viewer) {
			ids = append(ids, st.id)
		}
	}
	page, err := paginate(ids, r.URL.Query(), 20, 40)
	if err != nil {
		apiError(w, http.StatusBadRequest, err.Error())
		return
	}
	out := []any{}
	for _, id := range page {
		out = append(out, s.statusJSON(s.statuses[id]))
	}
	s.link(w, r, page)
	writeJSON(w, http.StatusOK, out)
}

// ---- statuses

func (s *Server) handlePost(w http.ResponseWriter, r *http.Request, a *account) {
	f := form(r)
	text, vis := f.Get("status"), f.Get("visibility")
	switch vis {
	case "", "public", "unlisted", "private", "direct":
	default:
		apiError(w, http.StatusUnprocessableEntity, "Validation failed: Visibility is not included in the list")
		return
	}
	if strings.TrimSpace(text) == "" {
		apiError(w, http.StatusUnprocessableEntity, "Validation failed: Text can't be blank")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := CountCharacters(text); n > s.opts.MaxCharacters {
		apiError(w, http.StatusUnprocessableEntity, fmt.Sprintf("Validation failed: Text character limit of %d exceeded", s.opts.MaxCharacters))
		return
	}
	key := r.Header.Get("Idempotency-Key")
	now := s.now()
	if key != "" {
		if e, ok := s.idem[a.ID+"\x00"+key]; ok && now.Sub(e.at) < time.Hour {
			if _, alive := s.statuses[e.status.id]; alive {
				writeJSON(w, http.StatusOK, s.statusJSON(e.status))
				return
			}
		}
	}
	// The statuses family: counted on creation, reported instead of the
	// general limit.
	rs := s.statusRL[a.ID]
	if rs == nil || now.Sub(rs.start) >= s.opts.StatusWindow {
		rs = &rateState{start: now.Truncate(s.opts.StatusWindow)}
		s.statusRL[a.ID] = rs
	}
	reset := rs.start.Add(s.opts.StatusWindow)
	w.Header().Set("X-RateLimit-Limit", strconv.Itoa(s.opts.StatusLimit))
	w.Header().Set("X-RateLimit-Reset", reset.UTC().Format("2006-01-02T15:04:05.000000Z"))
	if rs.used >= s.opts.StatusLimit {
		s.limited.Add(1)
		w.Header().Set("X-RateLimit-Remaining", "0")
		apiError(w, http.StatusTooManyRequests, "Too many requests")
		return
	}
	rs.used++
	w.Header().Set("X-RateLimit-Remaining", strconv.Itoa(s.opts.StatusLimit-rs.used))
	st := s.createLocked(a, text, vis, now)
	st.idemKey = key
	if key != "" {
		s.idem[a.ID+"\x00"+key] = idemEntry{status: st, at: now}
	}
	s.posts.Add(1)
	writeJSON(w, http.StatusOK, s.statusJSON(st))
}

func (s *Server) handleGetStatus(w http.ResponseWriter, r *http.Request, a *account) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.statuses[r.PathValue("id")]
	if !ok || !s.visible(st, a) {
		apiError(w, http.StatusNotFound, "Record not found")
		return
	}
	writeJSON(w, http.StatusOK, s.statusJSON(st))
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request, a *account) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	rs := s.deleteRL[a.ID]
	if rs == nil || now.Sub(rs.start) >= s.opts.DeleteWindow {
		rs = &rateState{start: now.Truncate(s.opts.DeleteWindow)}
		s.deleteRL[a.ID] = rs
	}
	if rs.used >= s.opts.DeleteLimit {
		reset := rs.start.Add(s.opts.DeleteWindow)
		s.limited.Add(1)
		w.Header().Set("X-RateLimit-Limit", strconv.Itoa(s.opts.DeleteLimit))
		w.Header().Set("X-RateLimit-Remaining", "0")
		w.Header().Set("X-RateLimit-Reset", reset.UTC().Format("2006-01-02T15:04:05.000000Z"))
		w.Header().Set("Retry-After", strconv.Itoa(int(reset.Sub(now).Seconds()+1)))
		apiError(w, http.StatusTooManyRequests, "Too many requests")
		return
	}
	rs.used++
	st, ok := s.statuses[r.PathValue("id")]
	if !ok || !s.visible(st, a) {
		apiError(w, http.StatusNotFound, "Record not found")
		return
	}
	if st.author != a {
		apiError(w, http.StatusForbidden, "This action is not allowed")
		return
	}
	js := s.statusJSON(st)
	js["text"] = st.text
	s.deleteLocked(st)
	writeJSON(w, http.StatusOK, js)
}

// ---- notifications

func (s *Server) handleNotifications(w http.ResponseWriter, r *http.Request, a *account) {
	q := r.URL.Query()
	types, exclude := q["types[]"], q["exclude_types[]"]
	in := func(list []string, t string) bool {
		for _, x := range list {
			if x == t {
				return true
			}
		}
		return false
	}
	defer s.notifReads.Add(1) // after the page is read and written
	s.mu.Lock()
	defer s.mu.Unlock()
	byID := map[string]*notification{}
	var ids []string
	for _, n := range s.notifs {
		if n.owner != a || (len(types) > 0 && !in(types, n.typ)) || in(exclude, n.typ) {
			continue
		}
		byID[n.id] = n
		ids = append(ids, n.id)
	}
	page, err := paginate(ids, q, 40, 80)
	if err != nil {
		apiError(w, http.StatusBadRequest, err.Error())
		return
	}
	out := []any{}
	for _, id := range page {
		out = append(out, s.notifJSON(byID[id]))
	}
	s.link(w, r, page)
	writeJSON(w, http.StatusOK, out)
}

// paginate applies Mastodon's max_id/since_id/min_id/limit to numeric IDs
// and returns the page newest first.
func paginate(ids []string, q url.Values, def, maxLimit int) ([]string, error) {
	parse := func(k string) (int64, bool, error) {
		v := q.Get(k)
		if v == "" {
			return 0, false, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, false, fmt.Errorf("%s: not an ID: %q", k, v)
		}
		return n, true, nil
	}
	maxID, hasMax, err := parse("max_id")
	if err != nil {
		return nil, err
	}
	sinceID, hasSince, err := parse("since_id")
	if err != nil {
		return nil, err
	}
	minID, hasMin, err := parse("min_id")
	if err != nil {
		return nil, err
	}
	limit := def
	if v := q.Get("limit"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			limit = min(n, maxLimit)
		}
	}
	nums := make([]int64, 0, len(ids))
	for _, id := range ids {
		n, _ := strconv.ParseInt(id, 10, 64)
		if hasMax && n >= maxID || hasSince && n <= sinceID || hasMin && n <= minID {
			continue
		}
		nums = append(nums, n)
	}
	if hasMin {
		// min_id: the page just above min_id (oldest first), shown newest first.
		sort.Slice(nums, func(i, j int) bool { return nums[i] < nums[j] })
		if len(nums) > limit {
			nums = nums[:limit]
		}
		sort.Slice(nums, func(i, j int) bool { return nums[i] > nums[j] })
	} else {
		sort.Slice(nums, func(i, j int) bool { return nums[i] > nums[j] })
		if len(nums) > limit {
			nums = nums[:limit]
		}
	}
	out := make([]string, len(nums))
	for i, n := range nums {
		out[i] = strconv.FormatInt(n, 10)
	}
	return out, nil
}

// link sets Mastodon's Link header: next (older, max_id) and prev (newer,
// min_id).
func (s *Server) link(w http.ResponseWriter, r *http.Request, page []string) {
	if len(page) == 0 {
		return
	}
	base := s.URL + r.URL.Path
	q := url.Values{}
	for _, k := range []string{"types[]", "exclude_types[]", "limit"} {
		for _, v := range r.URL.Query()[k] {
			q.Add(k, v)
		}
	}
	next, prev := url.Values{}, url.Values{}
	for k, v := range q {
		next[k], prev[k] = v, v
	}
	next.Set("max_id", page[len(page)-1])
	prev.Set("min_id", page[0])
	w.Header().Set("Link", fmt.Sprintf(`<%s?%s>; rel="next", <%s?%s>; rel="prev"`, base, next.Encode(), base, prev.Encode()))
}

// ---- streaming

var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

func (s *Server) handleStreaming(w http.ResponseWriter, r *http.Request) {
	tok := r.URL.Query().Get("access_token")
	if h := r.Header.Get("Authorization"); h != "" {
		tok = strings.TrimPrefix(h, "Bearer ")
	}
	if p := r.Header.Get("Sec-WebSocket-Protocol"); tok == "" && p != "" {
		tok = p // Mastodon and GoToSocial accept the token as the subprotocol
	}
	kind := r.URL.Query().Get("stream")
	if s.streamingOff.Load() {
		apiError(w, http.StatusServiceUnavailable, "streaming unavailable")
		return
	}
	s.mu.Lock()
	a, ok := s.tokens[tok]
	s.mu.Unlock()
	if !ok {
		apiError(w, http.StatusUnauthorized, "Error: Invalid access token")
		return
	}
	if kind != "user" && kind != "direct" && kind != "user:notification" {
		apiError(w, http.StatusBadRequest, "Error: Unknown stream type")
		return
	}
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	if s.opts.StreamOpened != nil {
		s.opts.StreamOpened(a.Username)
	}
	st := &stream{conn: conn, account: a, kind: kind}
	s.mu.Lock()
	s.streams[st] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.streams, st)
		s.mu.Unlock()
		conn.Close()
	}()
	for {
		if _, _, err := conn.ReadMessage(); err != nil {
			return
		}
	}
}

// pushLocked sends an event to a's streams of kind; payload is JSON-encoded
// into a string, as Mastodon does (a "delete" payload is the bare ID).
func (s *Server) pushLocked(a *account, kind, event string, payload any) {
	var p string
	switch v := payload.(type) {
	case string:
		p = v
	default:
		b, _ := json.Marshal(v)
		p = string(b)
	}
	msg, _ := json.Marshal(map[string]any{"stream": []string{kind}, "event": event, "payload": p})
	for st := range s.streams {
		match := st.kind == kind || (st.kind == "user:notification" && kind == "user" && event == "notification")
		if st.account != a || !match {
			continue
		}
		st.mu.Lock()
		st.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		err := st.conn.WriteMessage(websocket.TextMessage, msg)
		st.mu.Unlock()
		if err != nil {
			st.conn.Close()
			delete(s.streams, st)
		}
	}
}

// Spend makes one authenticated request with token, as another client of
// the same account would, spending one request of its rate-limit budget.
func Spend(t interface{ Fatal(...any) }, s *Server, token string) {
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/api/v1/accounts/verify_credentials", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := s.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}
