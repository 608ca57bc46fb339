package matrix

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"maunium.net/go/mautrix"

	"github.com/remora-p2p/remora/sdk"
)

// cursor is the subscription position: S is a /sync token; E and P name the
// last delivered envelope (event ID and part). M ("more") says envelopes
// between E and S may still be undelivered: resuming then first pages
// backwards from S down to E.
type cursor struct {
	V int    `json:"v"`
	S string `json:"s"`
	E string `json:"e,omitempty"`
	P int    `json:"p,omitempty"`
	M bool   `json:"m,omitempty"`
}

func parseCursor(b []byte) (*cursor, error) {
	if b == nil {
		return nil, nil
	}
	var c cursor
	if err := json.Unmarshal(b, &c); err != nil || c.V != 1 || c.S == "" {
		return nil, sdk.Errorf(sdk.CodeCursorInvalid, "matrix: cursor is not one this adapter wrote; resubscribe from the start")
	}
	return &c, nil
}

func (c cursor) bytes() []byte {
	c.V = 1
	b, _ := json.Marshal(c)
	return b
}

// syncResponse is the part of a /sync response we read.
type syncResponse struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join map[string]struct {
			Timeline struct {
				Events    []rawEvent `json:"events"`
				Limited   bool       `json:"limited"`
				PrevBatch string     `json:"prev_batch"`
			} `json:"timeline"`
		} `json:"join"`
		Leave map[string]json.RawMessage `json:"leave"`
	} `json:"rooms"`
}

type messagesResponse struct {
	Chunk []rawEvent `json:"chunk"`
	End   string     `json:"end"`
}

// syncFilter limits /sync to our room and our event types (envelopes, and
// board writes, which are pushed as they happen), with no state, presence,
// receipts or account data; limit bounds the timeline.
func (c *channel) syncFilter(limit int) string {
	none := map[string]any{"not_types": []string{"*"}}
	f := map[string]any{
		"presence":     none,
		"account_data": none,
		"room": map[string]any{
			"rooms":        []string{string(c.roomID)},
			"timeline":     map[string]any{"types": []string{c.types.envelope, c.types.board}, "limit": limit},
			"state":        map[string]any{"types": []string{"m.room.encryption"}, "lazy_load_members": true},
			"ephemeral":    none,
			"account_data": none,
		},
	}
	b, _ := json.Marshal(f)
	return string(b)
}

// timelineLimit is the most envelope events one /sync returns; more make the
// timeline "limited" and the gap is paged from /messages.
const timelineLimit = 100

func (c *channel) sync(ctx context.Context, since string, timeout time.Duration) (*syncResponse, error) {
	limit := timelineLimit
	if since == "" {
		limit = 1 // only the token is wanted; history comes from /messages
	}
	q := map[string]string{"timeout": strconv.Itoa(int(timeout / time.Millisecond)), "filter": c.syncFilter(limit), "set_presence": "offline"}
	if since != "" {
		q["since"] = since
	}
	url := c.cli.BuildURLWithQuery(mautrix.ClientURLPath{"v3", "sync"}, q)
	var resp syncResponse
	_, err := c.cli.MakeFullRequest(ctx, mautrix.FullRequest{Method: http.MethodGet, URL: url, ResponseJSON: &resp, MaxAttempts: 1})
	if err != nil {
		return nil, err
	}
	if resp.NextBatch == "" {
		return nil, fmt.Errorf("sync: homeserver returned no next_batch")
	}
	return &resp, nil
}

// messages pages backwards from token from, down to token to if set.
func (c *channel) messages(ctx context.Context, from, to string, types []string, limit int) (*messagesResponse, error) {
	filter, _ := json.Marshal(map[string]any{"types": types})
	q := map[string]string{"dir": "b", "from": from, "limit": strconv.Itoa(limit), "filter": string(filter)}
	if to != "" {
		q["to"] = to
	}
	url := c.cli.BuildURLWithQuery(mautrix.ClientURLPath{"v3", "rooms", c.roomID, "messages"}, q)
	var resp messagesResponse
	_, err := c.cli.MakeFullRequest(ctx, mautrix.FullRequest{Method: http.MethodGet, URL: url, ResponseJSON: &resp, MaxAttempts: 1})
	return &resp, err
}

// retry runs fn until it succeeds, ctx ends, or it fails with an error
// retrying cannot fix. Unavailable and rate limits are retried with backoff
// (rate limits after their retry-after), so a homeserver restart costs a
// subscription nothing.
func (c *channel) retry(ctx context.Context, op string, fn func() error) error {
	backoff := 250 * time.Millisecond
	for {
		err := classify(op, fn())
		if err == nil {
			c.mu.Lock()
			c.lastErr = ""
			c.mu.Unlock()
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := backoff
		switch sdk.CodeOf(err) {
		case sdk.CodeRateLimited:
			wait = sdk.RetryAfterOf(err)
			c.noteRateLimit(wait)
		case sdk.CodeUnavailable, sdk.CodeUnknown:
			backoff = min(backoff*2, 30*time.Second)
		default:
			return err
		}
		c.n.syncErrors.Add(1)
		c.mu.Lock()
		c.lastErr = err.Error()
		c.mu.Unlock()
		c.log.Warn("matrix: retrying", "op", op, "err", err, "in", wait)
		if err := sdk.Sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// catchUp pages backwards from token until event stopAt (included, so its
// remaining parts can be delivered), the start of the room, or cutoff, and
// returns the events oldest first.
func (c *channel) catchUp(ctx context.Context, token, stopAt string, cutoff time.Time) ([]rawEvent, error) {
	var rev []rawEvent
	for {
		var resp *messagesResponse
		err := c.retry(ctx, "backfill", func() error {
			var err error
			resp, err = c.messages(ctx, token, "", []string{c.types.envelope}, 100)
			return err
		})
		if err != nil {
			return nil, err
		}
		stop := false
		for _, ev := range resp.Chunk {
			if !cutoff.IsZero() && ev.time().Before(cutoff) {
				stop = true
				break
			}
			rev = append(rev, ev)
			if stopAt != "" && ev.ID == stopAt {
				stop = true
				break
			}
		}
		if stop || len(resp.Chunk) == 0 || resp.End == "" || resp.End == token {
			break
		}
		token = resp.End
	}
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	return rev, nil
}

// Subscribe long-polls /sync from the cursor. A nil cursor backfills the
// room up to Config.Backfill first; a gap (limited timeline) is filled from
// /messages down to the last delivered event.
func (c *channel) Subscribe(ctx context.Context, req sdk.SubscribeRequest, sink sdk.Sink) error {
	ctx, end, err := c.life.Begin(ctx)
	if err != nil {
		return fmt.Errorf("matrix: %w", err)
	}
	defer end()
	cur, err := parseCursor(req.Cursor)
	if err != nil {
		return err
	}
	pos := cursor{}
	if cur == nil {
		var resp *syncResponse
		if err := c.retry(ctx, "initial sync", func() error {
			var err error
			resp, err = c.sync(ctx, "", 0)
			return err
		}); err != nil {
			return err
		}
		evs, err := c.catchUp(ctx, resp.NextBatch, "", time.Now().Add(-c.cfg.Backfill.D()))
		if err != nil {
			return err
		}
		pos.S = resp.NextBatch
		if err := c.deliver(ctx, sink, evs, &pos); err != nil {
			return err
		}
	} else {
		pos = *cur
		if pos.M {
			evs, err := c.catchUp(ctx, pos.S, pos.E, time.Time{})
			if err != nil {
				return err
			}
			if err := c.deliver(ctx, sink, evs, &pos); err != nil {
				return err
			}
		}
	}
	timeout := c.cfg.SyncTimeout.D()
	var last time.Time
	for {
		if err := c.checkOpen(); err != nil {
			return err
		}
		// Fetch a burst in one request (Config.SyncMinInterval).
		if err := sdk.Sleep(ctx, time.Until(last.Add(c.cfg.SyncMinInterval.D()))); err != nil {
			return err
		}
		last = time.Now()
		var resp *syncResponse
		err := c.retry(ctx, "sync", func() error {
			var err error
			resp, err = c.sync(ctx, pos.S, timeout)
			if err != nil && pos.S != "" && httpStatus(err) == http.StatusBadRequest {
				return sdk.Errorf(sdk.CodeCursorInvalid, "matrix: the homeserver rejects the sync token; resubscribe from the start: %w", err)
			}
			return err
		})
		if err != nil {
			return err
		}
		if _, left := resp.Rooms.Leave[string(c.roomID)]; left {
			return sdk.Errorf(sdk.CodeNotFound, "matrix: %s is no longer in room %s (left, kicked or banned): rejoin the room and reconfigure the channel", c.cli.UserID, c.roomID)
		}
		room, ok := resp.Rooms.Join[string(c.roomID)]
		evs := room.Timeline.Events
		if ok && room.Timeline.Limited {
			// More arrived than the timeline holds: page back to what we
			// delivered last (or the backfill window if nothing yet).
			var cutoff time.Time
			if pos.E == "" {
				cutoff = time.Now().Add(-c.cfg.Backfill.D())
			}
			evs, err = c.catchUp(ctx, resp.NextBatch, pos.E, cutoff)
			if err != nil {
				return err
			}
		}
		pos.S, pos.M = resp.NextBatch, false
		if err := c.deliver(ctx, sink, evs, &pos); err != nil {
			return err
		}
	}
}

// deliver hands the envelopes of evs to sink, oldest first. pos.S is the
// sync token that follows evs; pos.E/pos.P is the last envelope already
// delivered (its earlier parts are skipped if evs starts with it).
//
// A board write seen live (a state event of the board type) is delivered
// too, so that members learn of it at once instead of at their next board
// read: the value is what Get would return for its key. It does not move
// E/P (catching up pages envelopes only), so after a restart it may come
// again, which the core's dedupe absorbs.
func (c *channel) deliver(ctx context.Context, sink sdk.Sink, evs []rawEvent, pos *cursor) error {
	type item struct {
		ev    rawEvent
		part  int
		n     int
		data  []byte
		board bool
	}
	var items []item
	for _, ev := range evs {
		if ev.Type == c.types.board {
			if ev.StateKey == nil || *ev.StateKey == "" || len(ev.Content) <= 2 {
				continue // not a board entry, or cleared
			}
			if _, v, err := parseBoard(ev.Content, false); err == nil {
				items = append(items, item{ev: ev, n: 1, data: v, board: true})
				c.n.boardPushed.Add(1)
			} else {
				c.n.ignoredInvalid.Add(1)
			}
			continue
		}
		if ev.Type != c.types.envelope {
			c.n.ignoredForeign.Add(1)
			continue
		}
		envs, err := parseEnvelope(ev.Content)
		if err != nil {
			if len(ev.Content) <= 2 {
				continue // redacted
			}
			if errors.Is(err, errOversize) {
				c.n.ignoredOversize.Add(1)
			} else {
				c.n.ignoredInvalid.Add(1)
			}
			c.log.Debug("matrix: ignored event", "event", ev.ID, "sender", ev.Sender, "err", err)
			continue
		}
		for i, d := range envs {
			if ev.ID == pos.E && i <= pos.P {
				continue // delivered before the restart
			}
			items = append(items, item{ev: ev, part: i, n: len(envs), data: d})
		}
	}
	for k, it := range items {
		idStr := it.ev.ID
		if it.n > 1 {
			idStr += "/" + strconv.Itoa(it.part)
		}
		next := cursor{S: pos.S, E: it.ev.ID, P: it.part, M: k < len(items)-1}
		if it.board {
			next.E, next.P = pos.E, pos.P
		}
		if err := sink.Deliver(ctx, sdk.Delivery{ID: idStr, Data: it.data, Cursor: next.bytes(), From: it.ev.Sender, Time: it.ev.time()}); err != nil {
			return err
		}
		c.n.delivered.Add(1)
		*pos = next
	}
	return nil
}
