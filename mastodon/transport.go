package mastodon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gomasto "github.com/mattn/go-mastodon"

	"github.com/remora-p2p/remora/sdk"
)

// publishReserve is how many requests of a rate-limit window Publish leaves
// to reads, so the subscription keeps working while publishing backs off.
const publishReserve = 3

type ctxKey int

const (
	keyIdempotency ctxKey = iota
	keyPublish
)

// rateLimitedError is a 429, or a request not sent because the window's
// budget is spent.
type rateLimitedError struct {
	retryAfter time.Duration
	sent       bool
}

func (e *rateLimitedError) Error() string {
	if e.sent {
		return fmt.Sprintf("rate limited by the server (429), retry after %s", e.retryAfter)
	}
	return fmt.Sprintf("rate-limit budget spent, backing off for %s before the server answers 429", e.retryAfter)
}

// bucket is one rate limit as the server reports it.
type bucket struct {
	limit     int
	remaining int
	reset     time.Time
}

// Mastodon reports three limits: the general one (300 requests / 5 min per
// account) on every API response; on POST /api/v1/statuses the statuses
// family (300 statuses / 3 h per account) instead; and the delete throttle
// (30 DELETE /api/v1/statuses/:id per 30 min) only on the 429 it causes.
const (
	bucketGeneral  = "general"
	bucketStatuses = "statuses"
	bucketDeletes  = "deletes"
)

// bucketOf names the limit a request counts against.
func (t *transport) bucketOf(req *http.Request) string {
	if t.single {
		return bucketGeneral
	}
	switch {
	case req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/api/v1/statuses"):
		return bucketStatuses
	case req.Method == http.MethodDelete && strings.Contains(req.URL.Path, "/api/v1/statuses/"):
		return bucketDeletes
	}
	return bucketGeneral
}

// reported is the limit whose headers a response carries.
func reported(b string, status int) string {
	if b == bucketDeletes && status != http.StatusTooManyRequests {
		return bucketGeneral
	}
	return b
}

// transport adds the Idempotency-Key header, keeps track of the
// X-RateLimit-* headers per limit, stops before a 429 and turns a 429 into
// an error (go-mastodon would otherwise retry it for up to an hour).
type transport struct {
	base http.RoundTripper
	now  func() time.Time
	// single: the server has one limit for every request (GoToSocial: per
	// client IP), so every answer's headers report the general bucket.
	single bool

	requests atomic.Int64
	limited  atomic.Int64

	mu      sync.Mutex
	buckets map[string]*bucket
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	reserve := 0
	if ctx.Value(keyPublish) != nil {
		reserve = publishReserve
	}
	b := t.bucketOf(req)
	wait := t.budget(bucketGeneral, reserve)
	if b != bucketGeneral {
		wait = max(wait, t.budget(b, 0))
	}
	if wait > 0 {
		t.limited.Add(1)
		return nil, &rateLimitedError{retryAfter: wait}
	}
	if key, _ := ctx.Value(keyIdempotency).(string); key != "" {
		req = req.Clone(ctx)
		req.Header.Set("Idempotency-Key", key)
	}
	t.spend(bucketGeneral)
	t.requests.Add(1)
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	t.observe(reported(b, resp.StatusCode), resp)
	if resp.StatusCode == http.StatusTooManyRequests {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		t.limited.Add(1)
		return nil, &rateLimitedError{retryAfter: t.retryAfter(resp), sent: true}
	}
	return sdk.LimitResponse(req, resp, maxResponse)
}

// maxResponse bounds one API answer: a page of 40 notifications, each
// with its status and accounts, is 100-300 KB; a server that sends more
// (or never stops) is refused with CodeUnavailable.
const maxResponse = 8 << 20

// budget returns how long to wait before sending against limit name, 0 to
// send now.
func (t *transport) budget(name string, reserve int) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buckets[name]
	if b == nil {
		return 0
	}
	wait := b.reset.Sub(t.now())
	if wait <= 0 {
		delete(t.buckets, name) // a new window: learn it from the next answer
		return 0
	}
	if b.remaining > reserve {
		return 0
	}
	return wait
}

// spend counts a request against a limit locally: responses of POST
// /api/v1/statuses report the statuses family, not the general limit they
// also count against.
func (t *transport) spend(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if b := t.buckets[name]; b != nil && b.remaining > 0 {
		b.remaining--
	}
}

func (t *transport) observe(name string, resp *http.Response) {
	h := resp.Header
	limit, err1 := strconv.Atoi(h.Get("X-RateLimit-Limit"))
	remaining, err2 := strconv.Atoi(h.Get("X-RateLimit-Remaining"))
	reset, err3 := time.Parse(time.RFC3339Nano, h.Get("X-RateLimit-Reset"))
	if err1 != nil || err2 != nil || err3 != nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.buckets == nil {
		t.buckets = map[string]*bucket{}
	}
	t.buckets[name] = &bucket{limit: limit, remaining: remaining, reset: reset}
}

func (t *transport) retryAfter(resp *http.Response) time.Duration {
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if reset, err := time.Parse(time.RFC3339Nano, resp.Header.Get("X-RateLimit-Reset")); err == nil {
		if d := reset.Sub(t.now()); d > 0 {
			return d
		}
	}
	return 5 * time.Second
}

// state returns the last rate-limit headers seen for limit name.
func (t *transport) state(name string) (limit, remaining int, reset time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if b := t.buckets[name]; b != nil {
		return b.limit, b.remaining, b.reset
	}
	return 0, 0, time.Time{}
}

// classify turns an error from go-mastodon or the transport into a typed
// sdk error for operation op.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("mastodon: %s: %w", op, err)
	}
	var rl *rateLimitedError
	if errors.As(err, &rl) {
		return &sdk.Error{Code: sdk.CodeRateLimited, Message: fmt.Sprintf("mastodon: %s: %v", op, rl), RetryAfter: rl.retryAfter, Err: err}
	}
	var api *gomasto.APIError
	if errors.As(err, &api) {
		switch {
		case api.StatusCode == http.StatusUnauthorized:
			return sdk.Errorf(sdk.CodeAuthFailed, "mastodon: %s: the server rejected the access token (%s); it was revoked or expired: run `remora channel add mastodon` again to authorize a new one: %w", op, api.Message, err)
		case api.StatusCode == http.StatusForbidden:
			return sdk.Errorf(sdk.CodeNeedsUserAction, "mastodon: %s: forbidden (%s): the account may be suspended, unconfirmed, or the token lacks the read/write scopes; check the account in the web interface, then authorize again: %w", op, api.Message, err)
		case api.StatusCode == http.StatusNotFound:
			return sdk.Errorf(sdk.CodeNotFound, "mastodon: %s: not found: %w", op, err)
		case (api.StatusCode == http.StatusUnprocessableEntity || api.StatusCode == http.StatusBadRequest) && overLimit(api.Message):
			return sdk.Errorf(sdk.CodeTooLarge, "mastodon: %s: the server counts the post over its character limit (%s): %w", op, api.Message, err)
		case api.StatusCode == http.StatusUnprocessableEntity:
			return sdk.Errorf(sdk.CodeUnknown, "mastodon: %s: the server refused it (%s): %w", op, api.Message, err)
		case api.StatusCode >= 500:
			return sdk.Errorf(sdk.CodeUnavailable, "mastodon: %s: server error %d, retrying later: %w", op, api.StatusCode, err)
		}
		return sdk.Errorf(sdk.CodeUnknown, "mastodon: %s: %w", op, err)
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return sdk.Errorf(sdk.CodeUnavailable, "mastodon: %s: cannot reach the server: %w", op, err)
	}
	return sdk.Errorf(sdk.CodeUnavailable, "mastodon: %s: %w", op, err)
}

func timeNow() time.Time { return time.Now() }

// overLimit recognises the servers' answers to a post over the character
// limit: Mastodon's 422 "Validation failed: Text character limit of 500
// exceeded", GoToSocial's 400 "text with spoiler exceed max chars (500)".
func overLimit(msg string) bool {
	m := strings.ToLower(msg)
	return strings.Contains(m, "character limit") || strings.Contains(m, "exceed max chars")
}
