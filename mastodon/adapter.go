package mastodon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	gomasto "github.com/mattn/go-mastodon"

	"github.com/remora-p2p/remora/sdk"
)

// Version is the adapter's version.
const Version = "0.1.0"

// Published limits. Mastodon allows 300 API requests per 5 minutes per
// account, and 300 new statuses per 3 hours (RateLimiter family
// "statuses"); every item is one status, so the second one is what paces
// Publish. GoToSocial allows 300 requests per 5 minutes per client IP
// (advanced-rate-limit-requests), shared by every account and anonymous
// call from that address.
const (
	rateRequests    = 300
	ratePer         = 3 * time.Hour
	gtsRateRequests = 300
	gtsRatePer      = 5 * time.Minute
	// idempotencyWindow is how long Mastodon keeps an Idempotency-Key
	// (3600 s in Redis).
	idempotencyWindow = time.Hour
	maxBatch          = 20
)

type adapter struct{}

// New returns the Mastodon adapter.
func New() sdk.Adapter { return adapter{} }

func defaults() sdk.Capabilities {
	return sdk.Capabilities{
		MaxPayload:  defaultMaxChars - 2*len("@username "),
		Counting:    sdk.CountMastodon,
		Text:        true,
		MaxBatch:    maxBatch,
		Push:        true,
		Latency:     sdk.Duration(time.Second),
		Addressed:   true,
		Delete:      sdk.DeleteOwn,
		Idempotency: sdk.Idempotency{Level: sdk.IdempotencyWindow, Window: sdk.Duration(idempotencyWindow)},
		RateLimit:   sdk.RateLimit{Requests: rateRequests, Per: sdk.Duration(ratePer)},
	}
}

func (adapter) Info() sdk.Info {
	return sdk.Info{
		Name:     "mastodon",
		Version:  Version,
		Summary:  "a Mastodon or GoToSocial account: direct posts to the circle's accounts, read over the streaming API",
		Defaults: defaults(),
	}
}

// software is the server software, as far as it matters here.
type software int

const (
	// softOther is any server that does not say it is Mastodon: the
	// adapter assumes the least (GoToSocial, Pleroma, Akkoma...).
	softOther software = iota
	// softMastodon is Mastodon or a fork that says so (glitch-soc): it
	// counts a remote mention as its local part, keeps Idempotency-Key an
	// hour, and limits per account with a separate statuses family.
	softMastodon
	// softGoToSocial counts a post's full text, ignores Idempotency-Key,
	// and limits requests per client IP in one bucket.
	softGoToSocial
)

func (s software) String() string {
	switch s {
	case softMastodon:
		return "mastodon"
	case softGoToSocial:
		return "gotosocial"
	}
	return "other"
}

// detectSoftware reads the instance's source_url (v2) and version.
// Mastodon's source_url is https://github.com/mastodon/mastodon (forks
// keep the /mastodon repository name); GoToSocial's names gotosocial.
// Without a source_url (a v1-only server), a bare "x.y.z" version is an old
// Mastodon; "(compatible; ...)" versions are other software.
func detectSoftware(sourceURL, version string) software {
	src, ver := strings.ToLower(strings.TrimRight(sourceURL, "/")), strings.ToLower(version)
	switch {
	case strings.Contains(src, "gotosocial") || strings.Contains(ver, "gotosocial"):
		return softGoToSocial
	case strings.HasSuffix(src, "/mastodon"):
		return softMastodon
	case src == "" && ver != "" && !strings.ContainsAny(ver, "(+ ") && strings.Count(ver, ".") == 2:
		return softMastodon
	}
	return softOther
}

// instanceInfo is what the adapter reads from /api/v2/instance (or v1).
type instanceInfo struct {
	domain    string
	maxChars  int
	streaming string // streaming API base URL, when the server names one
	software  software
}

// mastodonCounting reports whether the server counts a mention by its
// local part only (Mastodon's rule); other servers count the full text.
func (i instanceInfo) mastodonCounting() bool { return i.software == softMastodon }

// honorsIdempotencyKey reports whether the server dedupes a repeated
// Idempotency-Key (Mastodon: an hour, per account). GoToSocial ignores it.
func (i instanceInfo) honorsIdempotencyKey() bool { return i.software == softMastodon }

func (adapter) Configure(ctx context.Context, req sdk.ConfigureRequest) (sdk.Channel, error) {
	cfg, accts, err := parseConfig(req.Config, req.Secrets)
	if err != nil {
		return nil, err
	}
	log := req.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tr := &transport{base: http.DefaultTransport, now: time.Now}
	if dt, ok := http.DefaultTransport.(*http.Transport); ok {
		tr.base = dt.Clone() // own idle pool: Close releases it
	}
	client := gomasto.NewClient(&gomasto.Config{Server: cfg.Server, AccessToken: strings.TrimSpace(req.Secrets[SecretToken])})
	client.Client = http.Client{Transport: tr, Timeout: time.Minute}
	client.UserAgent = userAgent

	me, err := client.GetAccountCurrentUser(ctx)
	if err != nil {
		return nil, classify("verify credentials", err)
	}
	inst, err := readInstance(ctx, client, cfg.Server)
	if err != nil {
		return nil, err
	}
	for i := range accts {
		accts[i] = accts[i].local(inst.domain)
	}
	cost := 0
	for _, a := range accts {
		cost += a.cost(inst.mastodonCounting())
	}
	maxPayload := inst.maxChars - cost
	if maxPayload < minBody {
		return nil, badConfig("mastodon: accounts: mentioning %d accounts leaves %d of the server's %d characters for data; use fewer accounts per channel", len(accts), maxPayload, inst.maxChars)
	}
	if cfg.MaxPayload > 0 {
		if cfg.MaxPayload < minBody {
			return nil, badConfig("mastodon: max_payload: %d is below the minimum of %d characters", cfg.MaxPayload, minBody)
		}
		maxPayload = min(maxPayload, cfg.MaxPayload)
	}
	j, err := openJournal(req.StateDir, time.Now(), !inst.honorsIdempotencyKey())
	if err != nil {
		return nil, sdk.Errorf(sdk.CodeBadConfig, "mastodon: state directory %s: %w", req.StateDir, err)
	}
	caps := defaults()
	caps.MaxPayload = maxPayload
	caps.PollInterval = cfg.PollInterval
	if cfg.Stream == "none" {
		caps.Push = false
		caps.Latency = cfg.PollInterval
	}
	if !inst.mastodonCounting() {
		caps.Counting = sdk.CountCodepoints
	}
	tr.single = inst.software != softMastodon
	if inst.software == softGoToSocial {
		// One bucket per client IP, shared by every account and by reads;
		// its size is in the headers of the answers already seen.
		caps.RateLimit = sdk.RateLimit{Requests: gtsRateRequests, Per: sdk.Duration(gtsRatePer)}
		if limit, _, _ := tr.state(bucketGeneral); limit > 0 {
			caps.RateLimit.Requests = limit
		}
	}
	if cfg.RateLimit != nil {
		caps.RateLimit = *cfg.RateLimit
	}
	if !inst.honorsIdempotencyKey() && req.StateDir == "" {
		// Only the journal, kept in memory here, stands between a retry
		// and a second post: nothing survives a restart.
		caps.Idempotency = sdk.Idempotency{Level: sdk.IdempotencyNone}
	}
	if !*cfg.DeleteConsumed {
		caps.Delete = sdk.DeleteNone
	}
	ch := &channel{
		cfg: cfg, caps: caps, log: log, client: client, tr: tr, me: me,
		inst: inst, accts: accts, known: map[string]bool{}, maxChars: inst.maxChars,
		closed:  make(chan struct{}),
		token:   strings.TrimSpace(req.Secrets[SecretToken]),
		journal: j,
	}
	for _, a := range accts {
		ch.known[a.String()] = true
	}
	// Items from this account itself (another device of the same member,
	// or a post addressing its own account) are accepted too: GoToSocial
	// notifies an account of its own mentions; Mastodon does not.
	if own, ok := parseAcct(me.Acct); ok {
		ch.known[own.local(inst.domain).String()] = true
	}
	log.Info("mastodon channel ready", "server", cfg.Server, "software", inst.software.String(), "account", me.Acct,
		"max_characters", inst.maxChars, "max_payload", maxPayload, "accounts", len(accts))
	return ch, nil
}

// readInstance reads the character limit and domain: /api/v2/instance
// (Mastodon ≥ 4.0, GoToSocial), else /api/v1/instance, else 500.
func readInstance(ctx context.Context, client *gomasto.Client, server string) (instanceInfo, error) {
	u, _ := url.Parse(server)
	info := instanceInfo{domain: strings.ToLower(u.Hostname()), maxChars: defaultMaxChars}
	var v2 struct {
		Domain        string `json:"domain"`
		Version       string `json:"version"`
		SourceURL     string `json:"source_url"`
		Configuration struct {
			URLs struct {
				Streaming string `json:"streaming"`
			} `json:"urls"`
			Statuses struct {
				MaxCharacters int `json:"max_characters"`
			} `json:"statuses"`
		} `json:"configuration"`
	}
	err := getJSON(ctx, client, server+"/api/v2/instance", &v2)
	if err == nil {
		if v2.Domain != "" {
			info.domain = strings.ToLower(v2.Domain)
		}
		if n := v2.Configuration.Statuses.MaxCharacters; n > 0 {
			info.maxChars = n
		}
		info.streaming = v2.Configuration.URLs.Streaming
		info.software = detectSoftware(v2.SourceURL, v2.Version)
		return info, nil
	}
	if code := sdk.CodeOf(err); code != sdk.CodeNotFound {
		return info, err
	}
	inst, err := client.GetInstance(ctx)
	if err != nil {
		if sdk.CodeOf(classify("instance", err)) == sdk.CodeNotFound {
			return info, nil
		}
		return info, classify("read /api/v1/instance", err)
	}
	if inst.URI != "" {
		info.domain = strings.ToLower(strings.TrimPrefix(strings.TrimPrefix(inst.URI, "https://"), "http://"))
	}
	if c := inst.Configuration; c != nil && c.Statuses != nil {
		if n, ok := (*c.Statuses)["max_characters"].(float64); ok && n > 0 {
			info.maxChars = int(n)
		}
	}
	if s, ok := inst.URLs["streaming_api"]; ok {
		info.streaming = s
	}
	info.software = detectSoftware("", inst.Version)
	return info, nil
}

// getJSON is a GET for endpoints go-mastodon lacks, through the same
// client (token, rate limits).
func getJSON(ctx context.Context, client *gomasto.Client, u string, out any) error {
	return call(ctx, client, http.MethodGet, u, nil, out)
}

// call sends a request through the client (token, user agent, rate
// limits): form goes in the body of a POST, in the query otherwise. An
// error answer becomes a *gomasto.APIError with the server's message, for
// classify.
func call(ctx context.Context, client *gomasto.Client, method, u string, form url.Values, out any) error {
	var body io.Reader
	if method == http.MethodPost && form != nil {
		body = strings.NewReader(form.Encode())
	} else if form != nil {
		u += "?" + form.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return fmt.Errorf("mastodon: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Authorization", "Bearer "+client.Config.AccessToken)
	req.Header.Set("User-Agent", userAgent)
	op := method + " " + req.URL.Path
	resp, err := client.Do(req)
	if err != nil {
		return classify(op, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&e)
		msg := e.Error
		if msg == "" {
			msg = resp.Status
		}
		return classify(op, &gomasto.APIError{StatusCode: resp.StatusCode, Message: msg})
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return sdk.Errorf(sdk.CodeUnavailable, "mastodon: %s: bad JSON: %w", op, err)
	}
	return nil
}

// errClosed is returned by calls after Close.
var errClosed = fmt.Errorf("mastodon: %w", sdk.ErrClosed)
