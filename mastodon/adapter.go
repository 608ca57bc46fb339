package mastodon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
// Publish.
const (
	rateRequests = 300
	ratePer      = 3 * time.Hour
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

// instanceInfo is what the adapter reads from /api/v2/instance (or v1).
type instanceInfo struct {
	domain    string
	maxChars  int
	streaming string // streaming API base URL, when the server names one
}

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
	client.UserAgent = "remora-mastodon/" + Version

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
		cost += a.cost()
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
	j, err := openJournal(req.StateDir, time.Now())
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
	if cfg.RateLimit != nil {
		caps.RateLimit = *cfg.RateLimit
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
	log.Info("mastodon channel ready", "server", cfg.Server, "account", me.Acct, "max_characters", inst.maxChars, "max_payload", maxPayload, "accounts", len(accts))
	return ch, nil
}

// readInstance reads the character limit and domain: /api/v2/instance
// (Mastodon ≥ 4.0, GoToSocial), else /api/v1/instance, else 500.
func readInstance(ctx context.Context, client *gomasto.Client, server string) (instanceInfo, error) {
	u, _ := url.Parse(server)
	info := instanceInfo{domain: strings.ToLower(u.Hostname()), maxChars: defaultMaxChars}
	var v2 struct {
		Domain        string `json:"domain"`
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
	return info, nil
}

// getJSON is a GET for endpoints go-mastodon lacks, through the same
// client (token, rate limits).
func getJSON(ctx context.Context, client *gomasto.Client, u string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("mastodon: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+client.Config.AccessToken)
	req.Header.Set("User-Agent", client.UserAgent)
	resp, err := client.Do(req)
	if err != nil {
		return classify("GET "+req.URL.Path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return classify("GET "+req.URL.Path, &gomasto.APIError{StatusCode: resp.StatusCode, Message: resp.Status})
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return sdk.Errorf(sdk.CodeUnavailable, "mastodon: GET %s: bad JSON: %w", req.URL.Path, err)
	}
	return nil
}

// errClosed is returned by calls after Close.
var errClosed = errors.New("mastodon: channel closed")
