package mastodon

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/remora-p2p/remora/sdk"
)

// SecretToken is the name of the access token in ConfigureRequest.Secrets.
const SecretToken = "token"

// Config is a Mastodon channel's configuration (JSON).
type Config struct {
	// Server is the instance's base URL, e.g. "https://social.example".
	Server string `json:"server"`
	// Accounts are the circle members' accounts this channel addresses by
	// default and accepts items from: "bob" (same server) or
	// "bob@other.example".
	Accounts []string `json:"accounts"`
	// MaxPayload lowers the max payload (characters of armor) below what
	// the instance allows; 0 keeps the instance's.
	MaxPayload int `json:"max_payload,omitempty"`
	// PollInterval is the polling interval when streaming fails (default
	// 30s, at least 1s).
	PollInterval sdk.Duration `json:"poll_interval,omitempty"`
	// DeleteConsumed offers Delete of own statuses, so core removes them
	// once consumed or expired (default true).
	DeleteConsumed *bool `json:"delete_consumed,omitempty"`
	// AcceptStrangers delivers armored posts from accounts not in Accounts
	// too (core still drops anything not signed by a member). Default false.
	AcceptStrangers bool `json:"accept_strangers,omitempty"`
	// RateLimit overrides the declared publishing limit. The default is
	// Mastodon's 300 statuses per 3 hours per account; on GoToSocial, 300
	// requests per 5 minutes per client IP (or what its headers say),
	// shared with reads and with every account used from that address.
	// Set it for a server configured otherwise, e.g. {"requests": 1000,
	// "per": "5m"}.
	RateLimit *sdk.RateLimit `json:"rate_limit,omitempty"`
	// Stream is the streaming timeline: "user" (default) or "none" to poll
	// only.
	Stream string `json:"stream,omitempty"`
}

const (
	defaultPoll     = 30 * time.Second
	defaultMaxChars = 500
)

var acctRE = regexp.MustCompile(`^@?([A-Za-z0-9_]+(?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?)(?:@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+))?$`)

// acct is an account name split into user and domain ("" when local).
type acct struct{ user, domain string }

func parseAcct(s string) (acct, bool) {
	m := acctRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return acct{}, false
	}
	return acct{user: strings.ToLower(m[1]), domain: strings.ToLower(m[2])}, true
}

// local resolves the domain against the instance's: an account of our own
// server is written without it.
func (a acct) local(own string) acct {
	if a.domain == own {
		a.domain = ""
	}
	return a
}

func (a acct) String() string {
	if a.domain == "" {
		return a.user
	}
	return a.user + "@" + a.domain
}

// mention is the text that mentions a in a post.
func (a acct) mention() string { return "@" + a.String() }

// cost is what the mention and its separating space count: on Mastodon
// only "@username" counts; other servers (GoToSocial, Pleroma) count the
// text as written, "@username@domain" for a remote account.
func (a acct) cost(mastodonRule bool) int {
	if mastodonRule {
		return 1 + len(a.user) + 1
	}
	return len(a.mention()) + 1
}

func badConfig(format string, args ...any) error {
	return sdk.Errorf(sdk.CodeBadConfig, format, args...)
}

// parseConfig reads and validates a configuration; errors name the field.
func parseConfig(raw json.RawMessage, secrets map[string]string) (Config, []acct, error) {
	var c Config
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if len(raw) == 0 {
		return c, nil, badConfig("mastodon: config is empty; give at least {\"server\": \"https://your.server\", \"accounts\": [\"friend@their.server\"]}")
	}
	if err := dec.Decode(&c); err != nil {
		return c, nil, badConfig("mastodon: config: %v (fields: server, accounts, max_payload, poll_interval, delete_consumed, accept_strangers, rate_limit, stream)", err)
	}
	u, err := url.Parse(c.Server)
	if c.Server == "" || err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return c, nil, badConfig("mastodon: server: %q is not a server URL; write it as https://social.example", c.Server)
	}
	c.Server = strings.TrimRight(c.Server, "/")
	if len(c.Accounts) == 0 {
		return c, nil, badConfig("mastodon: accounts: list the circle members' accounts to address, e.g. [\"bob@social.example\"]")
	}
	var accts []acct
	seen := map[string]bool{}
	for i, s := range c.Accounts {
		a, ok := parseAcct(s)
		if !ok {
			return c, nil, badConfig("mastodon: accounts[%d]: %q is not an account; write user or user@server", i, s)
		}
		if !seen[a.String()] {
			seen[a.String()] = true
			accts = append(accts, a)
		}
	}
	if c.MaxPayload < 0 {
		return c, nil, badConfig("mastodon: max_payload: %d is negative; leave it out to use the instance's limit", c.MaxPayload)
	}
	switch {
	case c.PollInterval == 0:
		c.PollInterval = sdk.Duration(defaultPoll)
	case c.PollInterval.D() < 10*time.Millisecond:
		return c, nil, badConfig("mastodon: poll_interval: %s is too short; use at least 10ms (30s or more against a real server)", c.PollInterval.D())
	}
	switch c.Stream {
	case "":
		c.Stream = "user"
	case "user", "none":
	default:
		return c, nil, badConfig("mastodon: stream: %q: want \"user\" or \"none\"", c.Stream)
	}
	if r := c.RateLimit; r != nil && (r.Requests <= 0 || r.Per <= 0) {
		return c, nil, badConfig("mastodon: rate_limit: want {\"requests\": N, \"per\": \"5m\"} with both positive")
	}
	if c.DeleteConsumed == nil {
		t := true
		c.DeleteConsumed = &t
	}
	if strings.TrimSpace(secrets[SecretToken]) == "" {
		return c, nil, badConfig("mastodon: secret %q is missing: run `remora channel add mastodon` to authorize this server and store its access token", SecretToken)
	}
	return c, accts, nil
}

// mentionFor splits a PublishItem.To entry.
func mentionFor(s string) (acct, error) {
	a, ok := parseAcct(s)
	if !ok {
		return acct{}, fmt.Errorf("%q is not an account (user or user@server)", s)
	}
	return a, nil
}
