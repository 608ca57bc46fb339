package matrix

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/remora-p2p/remora/sdk"
)

// rawEvent is a room event as the client-server API returns it. Content is
// kept raw: it is outside input, parsed by parseEnvelope and parseBoard.
type rawEvent struct {
	Type     string          `json:"type"`
	ID       string          `json:"event_id"`
	Sender   string          `json:"sender"`
	TS       int64           `json:"origin_server_ts"`
	StateKey *string         `json:"state_key,omitempty"`
	Content  json.RawMessage `json:"content"`
}

func (e rawEvent) time() time.Time { return time.UnixMilli(e.TS) }

// counters for Health; names are stable (they show in `remora doctor`).
type counters struct {
	published, delivered, rateLimited, packedEvents atomic.Int64
	ignoredInvalid, ignoredOversize, ignoredForeign atomic.Int64
	redacted, syncErrors, boardFallbackPuts         atomic.Int64
	boardPushed                                     atomic.Int64 // board writes delivered live through Subscribe
}

type channel struct {
	cfg    Config
	cli    *mautrix.Client
	st     *stateStore
	log    *slog.Logger
	roomID id.RoomID
	types  eventTypes // of roomID

	n counters

	mu            sync.Mutex
	closed        bool
	life          sdk.Lifecycle // Close cancels calls in flight
	throttleUntil time.Time     // pack envelopes into few events until then
	boardFallback bool          // our power level forbids board state events
	boardNeed     int           // power level the room requires for it
	boardHave     int           // ours
	lastErr       string

	boardMu      sync.Mutex
	boardItems   map[string]sdk.BoardEntry // cached log-fallback board values
	boardScanned string                    // sync token the cache is complete up to
}

// openChannel resolves and joins the room, refuses encrypted rooms and finds
// out whether we may send board state events.
func openChannel(ctx context.Context, cfg Config, cli *mautrix.Client, st *stateStore, log *slog.Logger) (*channel, error) {
	roomID, err := joinRoom(ctx, cli, cfg.Room)
	if err != nil {
		return nil, err
	}
	c := &channel{cfg: cfg, cli: cli, st: st, log: log.With("room", string(roomID)), roomID: roomID, types: typesFor(string(roomID))}
	state, err := c.roomState(ctx)
	if err != nil {
		return nil, classify("read room state", err)
	}
	for _, ev := range state {
		if ev.Type == "m.room.encryption" && ev.StateKey != nil && *ev.StateKey == "" && len(ev.Content) > 2 {
			return nil, sdk.Errorf(sdk.CodeBadConfig, "matrix: room %s has end-to-end encryption enabled; remora envelopes are already end-to-end encrypted and this adapter does not speak Megolm: use a room without encryption (encryption cannot be turned off in a room, so create a new one)", roomID)
		}
	}
	pl := parsePowerLevels(state)
	c.boardNeed, c.boardHave = pl.stateLevel(c.types.board), pl.userLevel(string(cli.UserID))
	c.boardFallback = c.boardHave < c.boardNeed
	if c.boardFallback {
		c.log.Warn("matrix: our power level forbids board state events; board values go through the log", "need", c.boardNeed, "have", c.boardHave)
	}
	return c, nil
}

// joinRoom resolves an alias and joins the room if we are not in it yet
// (works when invited or when the room is public).
func joinRoom(ctx context.Context, cli *mautrix.Client, room string) (id.RoomID, error) {
	var roomID id.RoomID
	if strings.HasPrefix(room, "#") {
		res, err := cli.ResolveAlias(ctx, id.RoomAlias(room))
		if err != nil {
			if matrixCode(err) == "M_NOT_FOUND" {
				return "", sdk.Errorf(sdk.CodeNotFound, "matrix: room alias %s does not exist: check the alias, or use the room ID: %w", room, err)
			}
			return "", classify("resolve alias "+room, err)
		}
		roomID = res.RoomID
	} else {
		roomID = id.RoomID(room)
	}
	joined, err := cli.JoinedRooms(ctx)
	if err != nil {
		return "", loginError("list joined rooms", err)
	}
	for _, r := range joined.JoinedRooms {
		if r == roomID {
			return roomID, nil
		}
	}
	if _, err := cli.JoinRoom(ctx, string(roomID), nil); err != nil {
		switch matrixCode(err) {
		case "M_FORBIDDEN", "M_NOT_FOUND", "M_UNKNOWN":
			return "", sdk.Errorf(sdk.CodeNotFound, "matrix: cannot join room %s as %s (%s): the room must exist and you must be invited, or it must be public; ask a member to invite you: %w", room, cli.UserID, matrixCode(err), err)
		}
		return "", classify("join room "+room, err)
	}
	return roomID, nil
}

func (c *channel) Capabilities() sdk.Capabilities {
	caps := defaultCapabilities()
	if !c.cfg.redact() {
		caps.Delete = sdk.DeleteNone
	}
	return caps
}

func (c *channel) checkOpen() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("matrix: %w", sdk.ErrClosed)
	}
	return nil
}

// Close cancels the calls in flight (a long-polling /sync included), waits
// for them, then drops the idle connections.
func (c *channel) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return c.life.Close(func() error {
		c.cli.Client.CloseIdleConnections()
		return nil
	})
}

func (c *channel) throttled() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Before(c.throttleUntil)
}

func (c *channel) noteRateLimit(d time.Duration) {
	c.n.rateLimited.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	until := time.Now().Add(d + 30*time.Second)
	if until.After(c.throttleUntil) {
		c.throttleUntil = until
	}
}

// maxInlineWait is the longest retry-after Publish, Put and Delete wait out
// themselves; a longer one is returned as sdk.RateLimited for core to pace.
const maxInlineWait = 10 * time.Second

// withRateLimit runs fn, waiting out 429s of up to maxInlineWait within ctx.
func (c *channel) withRateLimit(ctx context.Context, op string, fn func() error) error {
	for {
		err := classify(op, fn())
		if sdk.CodeOf(err) != sdk.CodeRateLimited {
			return err
		}
		ra := sdk.RetryAfterOf(err)
		c.noteRateLimit(ra)
		if ra > maxInlineWait {
			return err
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < ra {
			return err
		}
		if serr := sdk.Sleep(ctx, ra); serr != nil {
			return serr
		}
	}
}

// txnID derives the transaction ID from the idempotency keys, so a retried
// send reuses it and the homeserver deduplicates it (txnIds are scoped to
// the device, which the saved session keeps across restarts).
func txnID(keys []string) string {
	if len(keys) == 1 && keys[0] != "" {
		return keys[0]
	}
	h := sha256.New()
	for _, k := range keys {
		h.Write([]byte(k))
		h.Write([]byte{0})
	}
	return "p" + hex.EncodeToString(h.Sum(nil)[:16])
}

// Publish sends each item as one envelope event; for batches of
// packThreshold items or more, and while the homeserver is throttling us, it
// packs up to maxParts items into one event.
func (c *channel) Publish(ctx context.Context, req sdk.PublishRequest) (sdk.PublishResponse, error) {
	ctx, end, err := c.life.Begin(ctx)
	if err != nil {
		return sdk.PublishResponse{}, fmt.Errorf("matrix: %w", err)
	}
	defer end()
	res := sdk.PublishResponse{Results: make([]sdk.PublishResult, len(req.Items))}
	now := time.Now()
	var todo []int
	for i, it := range req.Items {
		switch {
		case !sdk.ValidKey(it.IdempotencyKey):
			res.Results[i].Err = fmt.Errorf("matrix: %w", sdk.CheckKey("idempotency key", it.IdempotencyKey))
		case len(it.Data) == 0:
			res.Results[i].Err = sdk.Errorf(sdk.CodeBadConfig, "matrix: empty item")
		case payloadLen(it.Data) > MaxPayload:
			res.Results[i].Err = &sdk.Error{Code: sdk.CodeTooLarge, Message: fmt.Sprintf("matrix: item of %d code points exceeds the %d allowed", payloadLen(it.Data), MaxPayload)}
		default:
			if id, ok := c.st.lookup(it.IdempotencyKey, now); ok && it.IdempotencyKey != "" {
				res.Results[i].ID = id
				continue
			}
			todo = append(todo, i)
		}
	}
	done := map[string]string{}
	packs := map[string]int{}
	defer func() {
		if len(done) > 0 {
			if err := c.st.record(done, packs, time.Now()); err != nil {
				c.log.Error("matrix: record published keys", "err", err)
			}
		}
	}()
	for len(todo) > 0 {
		group, content := c.nextGroup(req.Items, todo)
		if content == nil {
			// A single item whose JSON exceeds the event limit (text with
			// many characters that take several bytes).
			res.Results[todo[0]].Err = &sdk.Error{Code: sdk.CodeTooLarge, Message: fmt.Sprintf("matrix: item encodes to more than %d bytes of event content", maxContentBytes)}
			todo = todo[1:]
			continue
		}
		keys := make([]string, len(group))
		for j, i := range group {
			keys[j] = req.Items[i].IdempotencyKey
		}
		var evID id.EventID
		err := classify("send", c.sendEvent(ctx, c.types.envelope, content, txnID(keys), &evID))
		if sdk.CodeOf(err) == sdk.CodeRateLimited {
			ra := sdk.RetryAfterOf(err)
			c.noteRateLimit(ra)
			wait := ra <= maxInlineWait
			if dl, ok := ctx.Deadline(); ok && time.Until(dl) < ra {
				wait = false
			}
			if wait && sdk.Sleep(ctx, ra) == nil {
				continue // regroup: now throttled, the rest goes packed
			}
			for _, i := range todo {
				res.Results[i].Err = err
			}
			break
		}
		if err != nil {
			for _, i := range group {
				res.Results[i].Err = err
			}
			todo = todo[len(group):]
			if code := sdk.CodeOf(err); code == sdk.CodeUnavailable || code == sdk.CodeAuthFailed || ctx.Err() != nil {
				for _, i := range todo {
					res.Results[i].Err = err
				}
				break
			}
			continue
		}
		for j, i := range group {
			idStr := string(evID)
			if len(group) > 1 {
				idStr = string(evID) + "/" + strconv.Itoa(j)
			}
			res.Results[i].ID = idStr
			done[req.Items[i].IdempotencyKey] = idStr
		}
		if len(group) > 1 {
			packs[string(evID)] = len(group)
			c.n.packedEvents.Add(1)
		}
		c.n.published.Add(int64(len(group)))
		todo = todo[len(group):]
	}
	return res, nil
}

// packThreshold is the batch size from which Publish packs envelopes into
// shared events even when not throttled: a large batch is a backlog (a
// flush after being offline), where one event per envelope costs a round
// trip each and rate-limit budget.
const packThreshold = 8

// nextGroup picks the items of the next event: one, or (while throttled, or
// for a large batch) as many as fit. It returns nil content if even the
// first item does not fit.
func (c *channel) nextGroup(items []sdk.PublishItem, todo []int) ([]int, json.RawMessage) {
	limit := 1
	if c.throttled() || len(todo) >= packThreshold {
		limit = maxParts
	}
	var content json.RawMessage
	parts := make([]part, 0, limit)
	n := 0
	for _, i := range todo {
		if n == limit {
			break
		}
		parts = append(parts, newPart(items[i].IdempotencyKey, items[i].Data))
		b, err := marshalContent(envelopeContent{V: contentVersion, E: parts})
		if err != nil || len(b) > maxContentBytes {
			break
		}
		content = b
		n++
	}
	return todo[:n], content
}

func (c *channel) sendEvent(ctx context.Context, typ string, content json.RawMessage, txn string, out *id.EventID) error {
	url := c.cli.BuildClientURL("v3", "rooms", c.roomID, "send", typ, txn)
	var resp mautrix.RespSendEvent
	_, err := c.cli.MakeFullRequest(ctx, mautrix.FullRequest{Method: http.MethodPut, URL: url, RequestBytes: content, ResponseJSON: &resp, MaxAttempts: 1})
	if err == nil {
		*out = resp.EventID
	}
	return err
}

// roomState reads the room's current state in one request.
func (c *channel) roomState(ctx context.Context) ([]rawEvent, error) {
	var evs []rawEvent
	url := c.cli.BuildClientURL("v3", "rooms", c.roomID, "state")
	_, err := c.cli.MakeFullRequest(ctx, mautrix.FullRequest{Method: http.MethodGet, URL: url, ResponseJSON: &evs, MaxAttempts: 1})
	return evs, err
}

// splitID splits a delivery ID into event ID and part index (-1: whole event).
func splitID(s string) (id.EventID, int, error) {
	if !strings.HasPrefix(s, "$") {
		return "", 0, fmt.Errorf("not a Matrix event ID")
	}
	ev, part, ok := strings.Cut(s, "/")
	if !ok {
		return id.EventID(ev), -1, nil
	}
	i, err := strconv.Atoi(part)
	if err != nil || i < 0 || i >= maxParts {
		return "", 0, fmt.Errorf("bad part index %q", part)
	}
	return id.EventID(ev), i, nil
}

// Delete redacts our own events. A packed event (IDs "$event/N") is redacted
// once all its parts were deleted.
func (c *channel) Delete(ctx context.Context, req sdk.DeleteRequest) (sdk.DeleteResponse, error) {
	ctx, end, err := c.life.Begin(ctx)
	if err != nil {
		return sdk.DeleteResponse{}, fmt.Errorf("matrix: %w", err)
	}
	defer end()
	res := sdk.DeleteResponse{Errors: make([]error, len(req.IDs))}
	if !c.cfg.redact() {
		for i := range res.Errors {
			res.Errors[i] = sdk.Errorf(sdk.CodeUnsupported, "matrix: redaction is off for this channel (config redact: false)")
		}
		return res, nil
	}
	for i, s := range req.IDs {
		res.Errors[i] = c.deleteOne(ctx, s)
	}
	return res, nil
}

func (c *channel) deleteOne(ctx context.Context, s string) error {
	ev, part, err := splitID(s)
	if err != nil {
		return sdk.Errorf(sdk.CodeNotFound, "matrix: delete %q: %v", s, err)
	}
	var e rawEvent
	for attempt := 0; ; attempt++ {
		err = c.withRateLimit(ctx, "delete: get event", func() error {
			url := c.cli.BuildClientURL("v3", "rooms", c.roomID, "event", ev)
			_, err := c.cli.MakeFullRequest(ctx, mautrix.FullRequest{Method: http.MethodGet, URL: url, ResponseJSON: &e, MaxAttempts: 1})
			return err
		})
		// Dendrite may answer 404 for an event sent a moment ago on a busy
		// server: ask again before calling it gone.
		if sdk.CodeOf(err) != sdk.CodeNotFound || attempt == 3 {
			break
		}
		if err := sdk.Sleep(ctx, 300*time.Millisecond); err != nil {
			return err
		}
	}
	if sdk.CodeOf(err) == sdk.CodeNotFound {
		return nil // already gone
	}
	if err != nil {
		return err
	}
	if e.Sender != string(c.cli.UserID) {
		return sdk.Errorf(sdk.CodeUnsupported, "matrix: delete %s: sent by %s; this channel deletes only its own events", s, e.Sender)
	}
	if len(e.Content) <= 2 { // {} : already redacted
		return nil
	}
	if part >= 0 {
		parts := c.st.packedParts(string(ev))
		if parts == 0 {
			envs, perr := parseEnvelope(e.Content)
			if perr != nil {
				return sdk.Errorf(sdk.CodeNotFound, "matrix: delete %s: not a remora envelope event", s)
			}
			parts = len(envs)
		}
		if part >= parts {
			return sdk.Errorf(sdk.CodeNotFound, "matrix: delete %s: the event has %d parts", s, parts)
		}
		all, err := c.st.deletePart(string(ev), part, parts)
		if err != nil || !all {
			return err
		}
	}
	err = c.withRateLimit(ctx, "redact", func() error {
		_, err := c.cli.RedactEvent(ctx, c.roomID, ev, mautrix.ReqRedact{TxnID: "r" + strings.TrimPrefix(string(ev), "$")})
		return err
	})
	if err == nil {
		c.n.redacted.Add(1)
	}
	return err
}

func (c *channel) Health(ctx context.Context) sdk.Health {
	h := sdk.Health{State: sdk.HealthOK, Counters: map[string]int64{
		"published":           c.n.published.Load(),
		"delivered":           c.n.delivered.Load(),
		"rate_limited":        c.n.rateLimited.Load(),
		"packed_events":       c.n.packedEvents.Load(),
		"ignored_invalid":     c.n.ignoredInvalid.Load(),
		"ignored_oversize":    c.n.ignoredOversize.Load(),
		"ignored_foreign":     c.n.ignoredForeign.Load(),
		"redacted":            c.n.redacted.Load(),
		"sync_errors":         c.n.syncErrors.Load(),
		"board_fallback_puts": c.n.boardFallbackPuts.Load(),
		"board_pushed":        c.n.boardPushed.Load(),
	}}
	var msgs []string
	if _, err := c.cli.Whoami(ctx); err != nil {
		err = classify("whoami", err)
		h.State = sdk.HealthDown
		if sdk.CodeOf(err) == sdk.CodeRateLimited {
			h.State = sdk.HealthDegraded
		}
		msgs = append(msgs, err.Error())
	}
	c.mu.Lock()
	fallback, need, have, lastErr := c.boardFallback, c.boardNeed, c.boardHave, c.lastErr
	c.mu.Unlock()
	if fallback {
		if h.State == sdk.HealthOK {
			h.State = sdk.HealthDegraded
		}
		msgs = append(msgs, fmt.Sprintf("board falls back to the room timeline: your power level %d is below the %d the room requires for %s state events; a room admin can run `remora channel add matrix` to allow it", have, need, c.types.board))
	}
	if lastErr != "" && h.State != sdk.HealthDown { // cleared by the next success
		h.State = sdk.HealthDegraded
		msgs = append(msgs, "last sync error: "+lastErr)
	}
	if h.State == sdk.HealthOK && len(msgs) == 0 {
		msgs = append(msgs, fmt.Sprintf("joined %s as %s (device %s)", c.roomID, c.cli.UserID, c.cli.DeviceID))
	}
	h.Message = strings.Join(msgs, "; ")
	return h
}

var (
	_ sdk.Channel  = (*channel)(nil)
	_ sdk.Board    = (*channel)(nil)
	_ sdk.Deleter  = (*channel)(nil)
	_ sdk.Healther = (*channel)(nil)
)
