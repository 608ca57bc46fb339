package matrix

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"

	"github.com/remora-p2p/remora/sdk"
)

// Put stores value as the room's board state event with state_key key.
// When our power level forbids that state event, the value goes to the
// timeline as a board item event, which Get also reads.
func (c *channel) Put(ctx context.Context, req sdk.PutRequest) error {
	ctx, end, err := c.life.Begin(ctx)
	if err != nil {
		return fmt.Errorf("matrix: %w", err)
	}
	defer end()
	if err := sdk.CheckKey("board key", req.Key); err != nil {
		return fmt.Errorf("matrix: put: %w", err)
	}
	if payloadLen(req.Value) > MaxPayload {
		return &sdk.Error{Code: sdk.CodeTooLarge, Message: "matrix: board value exceeds the maximum payload"}
	}
	p := newPart("", req.Value)
	c.mu.Lock()
	fallback := c.boardFallback
	c.mu.Unlock()
	if !fallback {
		content, err := marshalContent(boardContent{V: contentVersion, D: p.D, B: p.B})
		if err != nil {
			return err
		}
		err = c.withRateLimit(ctx, "board put", func() error {
			url := c.cli.BuildClientURL("v3", "rooms", c.roomID, "state", event.NewEventType(c.types.board), req.Key)
			_, err := c.cli.MakeFullRequest(ctx, mautrix.FullRequest{Method: "PUT", URL: url, RequestBytes: content, MaxAttempts: 1})
			return err
		})
		if matrixCode(err) != "M_FORBIDDEN" {
			return err
		}
		// Power levels changed under us: fall back.
		c.mu.Lock()
		c.boardFallback = true
		c.mu.Unlock()
		c.log.Warn("matrix: board state event forbidden; falling back to the timeline")
	}
	content, err := marshalContent(boardContent{V: contentVersion, K: req.Key, D: p.D, B: p.B})
	if err != nil {
		return err
	}
	var nonce [12]byte
	_, _ = rand.Read(nonce[:])
	err = c.withRateLimit(ctx, "board put (timeline fallback)", func() error {
		url := c.cli.BuildClientURL("v3", "rooms", c.roomID, "send", c.types.boardItem, "b"+hex.EncodeToString(nonce[:]))
		_, err := c.cli.MakeFullRequest(ctx, mautrix.FullRequest{Method: "PUT", URL: url, RequestBytes: content, MaxAttempts: 1})
		return err
	})
	if err == nil {
		c.n.boardFallbackPuts.Add(1)
	}
	return err
}

// Get reads the room state in one request. If a joined member (or we) may
// not send board state events, it also reads the timeline fallback items of
// the last Config.BoardWindow; the newest value per key wins.
func (c *channel) Get(ctx context.Context, req sdk.GetRequest) (sdk.GetResponse, error) {
	ctx, end, err := c.life.Begin(ctx)
	if err != nil {
		return sdk.GetResponse{}, fmt.Errorf("matrix: %w", err)
	}
	defer end()
	var state []rawEvent
	err = c.withRateLimit(ctx, "board get", func() error {
		var err error
		state, err = c.roomState(ctx)
		return err
	})
	if err != nil {
		return sdk.GetResponse{}, err
	}
	want := map[string]bool{}
	for _, k := range req.Keys {
		want[k] = true
	}
	latest := map[string]sdk.BoardEntry{}
	consider := func(key string, value []byte, t time.Time) {
		if len(want) > 0 && !want[key] {
			return
		}
		if old, ok := latest[key]; ok && !t.After(old.Time) {
			return
		}
		latest[key] = sdk.BoardEntry{Key: key, Value: value, Time: t}
	}
	for _, ev := range state {
		if ev.Type != c.types.board || ev.StateKey == nil || *ev.StateKey == "" {
			continue
		}
		if len(ev.Content) <= 2 {
			continue // cleared or redacted
		}
		_, v, err := parseBoard(ev.Content, false)
		if err != nil {
			c.n.ignoredInvalid.Add(1)
			continue
		}
		consider(*ev.StateKey, v, ev.time())
	}
	pl := parsePowerLevels(state)
	c.mu.Lock()
	c.boardNeed, c.boardHave = pl.stateLevel(c.types.board), pl.userLevel(string(c.cli.UserID))
	c.boardFallback = c.boardHave < c.boardNeed
	fallback := c.boardFallback
	c.mu.Unlock()
	if fallback || pl.anyoneBelow(c.types.board) {
		if err := c.scanBoardItems(ctx, consider); err != nil {
			return sdk.GetResponse{}, err
		}
	}
	var res sdk.GetResponse
	for _, e := range latest {
		res.Entries = append(res.Entries, e)
	}
	return res, nil
}

// scanBoardItems reads the board item events of the last
// BoardWindow. Results are cached: a later scan pages back only to the sync
// token where the previous one started, so polling Get costs one /sync and
// one short /messages.
func (c *channel) scanBoardItems(ctx context.Context, consider func(string, []byte, time.Time)) error {
	var resp *syncResponse
	err := c.withRateLimit(ctx, "board get: sync token", func() error {
		var err error
		resp, err = c.sync(ctx, "", 0)
		return err
	})
	if err != nil {
		return err
	}
	c.boardMu.Lock()
	defer c.boardMu.Unlock()
	cutoff := time.Now().Add(-c.cfg.BoardWindow.D())
	fresh := map[string]sdk.BoardEntry{}
	token, stopAt := resp.NextBatch, c.boardScanned
pages:
	for {
		var page *messagesResponse
		err := c.withRateLimit(ctx, "board get: timeline", func() error {
			var err error
			page, err = c.messages(ctx, token, stopAt, []string{c.types.boardItem}, 100)
			return err
		})
		if err != nil {
			return err
		}
		for _, ev := range page.Chunk {
			if ev.time().Before(cutoff) {
				break pages
			}
			if ev.Type != c.types.boardItem || len(ev.Content) <= 2 {
				continue
			}
			k, v, err := parseBoard(ev.Content, true)
			if err != nil {
				c.n.ignoredInvalid.Add(1)
				continue
			}
			if _, ok := fresh[k]; !ok { // newest first
				fresh[k] = sdk.BoardEntry{Key: k, Value: v, Time: ev.time()}
			}
		}
		if len(page.Chunk) == 0 || page.End == "" || page.End == token {
			break
		}
		token = page.End
	}
	if c.boardItems == nil {
		c.boardItems = map[string]sdk.BoardEntry{}
	}
	for k, e := range fresh {
		c.boardItems[k] = e
	}
	for k, e := range c.boardItems {
		if e.Time.Before(cutoff) {
			delete(c.boardItems, k)
			continue
		}
		consider(k, e.Value, e.Time)
	}
	c.boardScanned = resp.NextBatch
	return nil
}
