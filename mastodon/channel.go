package mastodon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gomasto "github.com/mattn/go-mastodon"

	"github.com/remora-p2p/remora/sdk"
)

// channel is one configured Mastodon account.
type channel struct {
	cfg      Config
	caps     sdk.Capabilities
	log      *slog.Logger
	client   *gomasto.Client
	tr       *transport
	me       *gomasto.Account
	inst     instanceInfo
	accts    []acct
	known    map[string]bool // accepted senders, acct as the server writes it
	maxChars int
	token    string

	journal *journal // idempotency keys: first attempt, status ID

	mu      sync.Mutex
	lastErr error
	life    sdk.Lifecycle // Close cancels Publish and Delete in flight

	closeOnce sync.Once
	closed    chan struct{}
	subs      sync.WaitGroup

	polling    atomic.Bool  // streaming failed; the subscription polls
	streamBase atomic.Value // string: the streaming base URL that worked last

	counters struct {
		published, deliveries, ignoredStranger, ignoredPlain, ignoredOther, ignoredOversize, duplicates,
		deletedSeen, streamConnects, streamDrops, polls, retryChecks, retryFound atomic.Int64
	}
}

var (
	_ sdk.Channel  = (*channel)(nil)
	_ sdk.Deleter  = (*channel)(nil)
	_ sdk.Healther = (*channel)(nil)
)

func (c *channel) Capabilities() sdk.Capabilities { return c.caps }

func (c *channel) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// Close ends subscriptions and releases idle connections.
// Publish and Delete in flight are cancelled (sdk.Lifecycle).
func (c *channel) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.life.Close(func() error {
		c.subs.Wait()
		c.journal.close()
		if t, ok := c.tr.base.(interface{ CloseIdleConnections() }); ok {
			t.CloseIdleConnections()
		}
		return nil
	})
}

// Publish posts each item as a direct status mentioning its addressees.
func (c *channel) Publish(ctx context.Context, req sdk.PublishRequest) (sdk.PublishResponse, error) {
	if c.isClosed() {
		return sdk.PublishResponse{}, errClosed
	}
	ctx, end, err := c.life.Begin(ctx)
	if err != nil {
		return sdk.PublishResponse{}, errClosed
	}
	defer end()
	if len(req.Items) > maxBatch {
		return sdk.PublishResponse{}, sdk.Errorf(sdk.CodeUnknown, "mastodon: publish: %d items, at most %d per call", len(req.Items), maxBatch)
	}
	resp := sdk.PublishResponse{Results: make([]sdk.PublishResult, len(req.Items))}
	var stop error // a rate limit or a dead token stops the rest of the batch
	for i, it := range req.Items {
		if stop == nil {
			if err := ctx.Err(); err != nil {
				stop = fmt.Errorf("mastodon: publish: %w", err)
			}
		}
		if stop != nil {
			resp.Results[i].Err = stop
			continue
		}
		if err := sdk.CheckKey("idempotency key", it.IdempotencyKey); err != nil {
			resp.Results[i].Err = fmt.Errorf("mastodon: publish: %w", err)
			continue
		}
		id, err := c.publishOne(ctx, it)
		resp.Results[i] = sdk.PublishResult{ID: id, Err: err}
		if code := sdk.CodeOf(err); code == sdk.CodeRateLimited || code == sdk.CodeAuthFailed || code == sdk.CodeNeedsUserAction {
			stop = err
		}
		c.setErr(err) // nil after a success: the service is back
	}
	return resp, nil
}

// status builds the text of a post: the mentions, then the item.
func (c *channel) status(it sdk.PublishItem) (string, error) {
	data := string(it.Data)
	if !armorText(data) {
		return "", sdk.Errorf(sdk.CodeUnsupported, "mastodon: publish: item holds characters other than armor (base64url, ':' and '.'); this channel carries armored envelopes only")
	}
	if len(data) > c.caps.MaxPayload {
		return "", sdk.Errorf(sdk.CodeTooLarge, "mastodon: publish: item of %d characters exceeds the max payload of %d", len(data), c.caps.MaxPayload)
	}
	to := c.accts
	if len(it.To) > 0 {
		to = to[:0:0]
		for _, s := range it.To {
			a, err := mentionFor(s)
			if err != nil {
				return "", sdk.Errorf(sdk.CodeUnknown, "mastodon: publish: to: %v", err)
			}
			to = append(to, a.local(c.inst.domain))
		}
	}
	var b strings.Builder
	cost := 0
	for _, a := range to {
		b.WriteString(a.mention())
		b.WriteByte(' ')
		cost += a.cost(c.inst.mastodonCounting())
	}
	if cost+len(data) > c.maxChars {
		return "", sdk.Errorf(sdk.CodeTooLarge, "mastodon: publish: %d characters of mentions and %d of data exceed the server's %d", cost, len(data), c.maxChars)
	}
	b.WriteString(data)
	return b.String(), nil
}

func (c *channel) publishOne(ctx context.Context, it sdk.PublishItem) (string, error) {
	text, err := c.status(it)
	if err != nil {
		return "", err
	}
	key := it.IdempotencyKey
	now := time.Now()
	if key != "" {
		at, seen := c.journal.begin(key, now)
		switch {
		case at.id != "":
			return at.id, nil // published by this process; the server may have forgotten the key
		case seen && (!c.inst.honorsIdempotencyKey() || now.Sub(at.first) > idempotencyWindow-5*time.Minute):
			// An earlier attempt's answer was lost, and the server will not
			// recognise the key (it ignores Idempotency-Key, or the key may
			// have expired): look for the post itself before posting again.
			id, err := c.findOwn(ctx, string(it.Data), at.first.Add(-time.Minute))
			if err != nil {
				return "", err
			}
			if id != "" {
				c.remember(key, id)
				return id, nil
			}
		}
	}
	pctx := context.WithValue(ctx, keyPublish, true)
	if key != "" {
		pctx = context.WithValue(pctx, keyIdempotency, key)
	}
	st, err := c.postStatus(pctx, text)
	if err != nil {
		return "", err
	}
	c.remember(key, st.ID)
	c.counters.published.Add(1)
	return st.ID, nil
}

func (c *channel) remember(key, id string) {
	if key != "" {
		c.journal.done(key, id, time.Now())
	}
}

// ownPages bounds how far back findOwn looks: 100 pages of 40 statuses,
// more than an hour of posting at any server's default rate limit.
const ownPages = 100

// findOwn looks through the account's own statuses back to since for one
// carrying data; it returns its ID or "".
func (c *channel) findOwn(ctx context.Context, data string, since time.Time) (string, error) {
	c.counters.retryChecks.Add(1)
	q := url.Values{"limit": {"40"}}
	for range ownPages {
		var sts []status
		if err := getJSON(ctx, c.client, c.cfg.Server+"/api/v1/accounts/"+url.PathEscape(string(c.me.ID))+"/statuses?"+q.Encode(), &sts); err != nil {
			return "", fmt.Errorf("mastodon: check own statuses before retry: %w", err)
		}
		oldest := ""
		for _, st := range sts {
			if b, ok := body(st.plain()); ok && b == data {
				c.counters.retryFound.Add(1)
				return st.ID, nil
			}
			if validID(st.ID) && (oldest == "" || idLess(st.ID, oldest)) {
				oldest = st.ID
			}
		}
		if len(sts) == 0 || oldest == "" || sts[len(sts)-1].CreatedAt.Before(since) {
			return "", nil
		}
		q.Set("max_id", oldest)
	}
	return "", nil
}

// Delete deletes own statuses; one already gone is success.
func (c *channel) Delete(ctx context.Context, req sdk.DeleteRequest) (sdk.DeleteResponse, error) {
	if c.isClosed() {
		return sdk.DeleteResponse{}, errClosed
	}
	ctx, end, err := c.life.Begin(ctx)
	if err != nil {
		return sdk.DeleteResponse{}, errClosed
	}
	defer end()
	if c.caps.Delete == sdk.DeleteNone {
		return sdk.DeleteResponse{}, sdk.Errorf(sdk.CodeUnsupported, "mastodon: delete: delete_consumed is off for this channel")
	}
	resp := sdk.DeleteResponse{Errors: make([]error, len(req.IDs))}
	for i, id := range req.IDs {
		if err := ctx.Err(); err != nil {
			resp.Errors[i] = fmt.Errorf("mastodon: delete: %w", err)
			continue
		}
		err := c.client.DeleteStatus(ctx, gomasto.ID(id))
		if err != nil {
			err = classify("delete "+id, err)
			if errors.Is(err, sdk.ErrNotFound) {
				err = nil
			}
		}
		resp.Errors[i] = err
	}
	if c.inst.software != softMastodon {
		c.confirmDeleted(ctx, req.IDs, resp.Errors)
	}
	return resp, nil
}

// deleteSettle bounds how long Delete waits for a server that deletes in
// the background.
const deleteSettle = 10 * time.Second

// confirmDeleted waits until each status deleted without error is gone
// (GET /api/v1/statuses/:id answers 404). GoToSocial answers DELETE at once
// and deletes the status, and its notifications, from a worker queue: until
// then a new subscriber still reads it. One still there after deleteSettle
// gets a retryable error, so the caller deletes it again later. Mastodon
// hides a deleted status before it answers.
func (c *channel) confirmDeleted(ctx context.Context, ids []string, errs []error) {
	deadline := time.Now().Add(deleteSettle)
	wait := 20 * time.Millisecond
	for i, id := range ids {
		for errs[i] == nil {
			err := getJSON(ctx, c.client, c.cfg.Server+"/api/v1/statuses/"+url.PathEscape(id), &status{})
			if errors.Is(err, sdk.ErrNotFound) {
				break
			}
			if err == nil && time.Now().After(deadline) {
				err = sdk.Errorf(sdk.CodeUnavailable, "mastodon: delete %s: the server accepted the delete but still shows the status after %s; delete it again later", id, deleteSettle)
			}
			if err != nil {
				errs[i] = err
				break
			}
			if sdk.Sleep(ctx, wait) != nil {
				errs[i] = fmt.Errorf("mastodon: delete %s: %w", id, ctx.Err())
				break
			}
			wait = min(2*wait, time.Second)
		}
	}
}

func (c *channel) setErr(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastErr = err
}

// Health reports the last error, the rate-limit budget and counters.
func (c *channel) Health(ctx context.Context) sdk.Health {
	limit, remaining, reset := c.tr.state(bucketGeneral)
	slimit, sremaining, sreset := c.tr.state(bucketStatuses)
	c.mu.Lock()
	lastErr := c.lastErr
	c.mu.Unlock()
	h := sdk.Health{State: sdk.HealthOK, Message: fmt.Sprintf("%s as @%s", c.cfg.Server, c.me.Acct)}
	if limit > 0 {
		scope := "" // Mastodon: per account
		if c.tr.single {
			scope = " (per client IP, shared with other accounts)"
		}
		h.Message += fmt.Sprintf("; requests %d/%d left until %s%s", remaining, limit, reset.Format(time.RFC3339), scope)
	}
	if slimit > 0 {
		h.Message += fmt.Sprintf("; statuses %d/%d left until %s", sremaining, slimit, sreset.Format(time.RFC3339))
	}
	if c.polling.Load() {
		h.State = sdk.HealthDegraded
		h.Message += fmt.Sprintf("; streaming unavailable, polling every %s (is the streaming API proxied?)", c.cfg.PollInterval.D())
	}
	if lastErr != nil {
		h.State = sdk.HealthDegraded
		if !sdk.CodeOf(lastErr).Retryable() {
			h.State = sdk.HealthDown
		}
		h.Message += "; last error: " + lastErr.Error()
	}
	n := &c.counters
	h.Counters = map[string]int64{
		"published": n.published.Load(), "delivered": n.deliveries.Load(),
		"ignored_stranger": n.ignoredStranger.Load(), "ignored_plain": n.ignoredPlain.Load(),
		"ignored_other": n.ignoredOther.Load(), "ignored_oversize": n.ignoredOversize.Load(), "duplicates_skipped": n.duplicates.Load(),
		"deleted_seen": n.deletedSeen.Load(), "stream_connects": n.streamConnects.Load(),
		"stream_drops": n.streamDrops.Load(), "polls": n.polls.Load(),
		"requests": c.tr.requests.Load(), "rate_limited": c.tr.limited.Load(),
		"retry_checks": n.retryChecks.Load(), "retry_found": n.retryFound.Load(),
	}
	return h
}
