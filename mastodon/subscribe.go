package mastodon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/remora-p2p/remora/sdk"
)

const (
	pageLimit     = 80 // Mastodon's maximum for notifications
	pingEvery     = 30 * time.Second
	readTimeout   = 75 * time.Second
	streamRetry   = time.Minute // after a failed dial, poll this long before dialling again
	reconnectWait = 200 * time.Millisecond
)

// sinkError marks an error from the host's sink: it ends the subscription.
type sinkError struct{ err error }

func (e *sinkError) Error() string { return e.err.Error() }
func (e *sinkError) Unwrap() error { return e.err }

// sub is one running subscription.
type sub struct {
	c    *channel
	sink sdk.Sink
	cur  cursor
}

// Subscribe delivers mention notifications that carry an item, from the
// cursor on: caught up over REST, then pushed over the streaming
// websocket; when streaming fails it polls every poll_interval and tries
// streaming again after a minute.
func (c *channel) Subscribe(ctx context.Context, req sdk.SubscribeRequest, sink sdk.Sink) error {
	if c.isClosed() {
		return errClosed
	}
	cur, err := decodeCursor(req.Cursor, string(c.me.ID))
	if err != nil {
		return err
	}
	c.subs.Add(1)
	defer c.subs.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-c.closed:
			cancel()
		case <-ctx.Done():
		}
	}()

	s := &sub{c: c, sink: sink, cur: cur}
	backoff := time.Second
	var dialAfter time.Time
	for ctx.Err() == nil {
		var conn *websocket.Conn
		if c.cfg.Stream == "user" && time.Now().After(dialAfter) {
			conn, err = c.dial(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				if code := sdk.CodeOf(err); code == sdk.CodeAuthFailed {
					return err
				}
				c.log.Warn("mastodon: streaming unavailable, polling", "err", err, "poll_interval", c.cfg.PollInterval.D())
				dialAfter = time.Now().Add(streamRetry)
				c.polling.Store(true)
			} else {
				c.counters.streamConnects.Add(1)
				c.polling.Store(false)
			}
		}
		err = s.catchUp(ctx)
		if err != nil {
			if conn != nil {
				conn.Close()
			}
			var se *sinkError
			switch {
			case ctx.Err() != nil:
				return nil
			case errors.As(err, &se):
				return se.err
			}
			switch sdk.CodeOf(err) {
			case sdk.CodeRateLimited, sdk.CodeUnavailable, sdk.CodeUnknown:
				wait := max(backoff, sdk.RetryAfterOf(err))
				c.log.Warn("mastodon: reading notifications failed, retrying", "err", err, "in", wait)
				c.setErr(err)
				if sdk.Sleep(ctx, wait) != nil {
					return nil
				}
				backoff = min(2*backoff, 5*time.Minute)
				continue
			}
			return err
		}
		backoff = time.Second
		if conn == nil {
			c.counters.polls.Add(1)
			if sdk.Sleep(ctx, c.cfg.PollInterval.D()) != nil {
				return nil
			}
			continue
		}
		err = s.stream(ctx, conn)
		var se *sinkError
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.As(err, &se):
			return se.err
		}
		c.counters.streamDrops.Add(1)
		c.log.Info("mastodon: stream dropped, reconnecting", "err", err)
		if sdk.Sleep(ctx, reconnectWait) != nil {
			return nil
		}
	}
	return nil
}

// dial opens the user stream, trying each of streamBases in turn. The
// token goes in the Authorization header (Mastodon) and as the subprotocol
// (Mastodon and GoToSocial), never in the URL, which proxies log.
func (c *channel) dial(ctx context.Context) (*websocket.Conn, error) {
	var errs []error
	for _, base := range c.streamBases() {
		conn, err := c.dialBase(ctx, base)
		if err == nil {
			c.streamBase.Store(base)
			return conn, nil
		}
		if ctx.Err() != nil || sdk.CodeOf(err) == sdk.CodeAuthFailed {
			return nil, err
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// streamBases lists where to open the streaming API, in order: the one
// that worked last; the URL the instance advertises
// (configuration.urls.streaming: Mastodon may serve streaming from another
// host), unless it names the server's own host, where the configured
// server URL is used instead because its scheme and port are known to work
// (GoToSocial advertises wss://HOST whatever its protocol and port); and
// last the configured server URL.
func (c *channel) streamBases() []string {
	server := c.cfg.Server
	var out []string
	add := func(b string) {
		if b != "" && !slices.Contains(out, b) {
			out = append(out, b)
		}
	}
	if last, ok := c.streamBase.Load().(string); ok {
		add(last)
	}
	if adv := strings.TrimRight(c.inst.streaming, "/"); adv != "" {
		au, err := url.Parse(adv)
		su, _ := url.Parse(server)
		if err == nil && au.Host != "" && (au.Scheme == "wss" || au.Scheme == "ws" || au.Scheme == "https" || au.Scheme == "http") &&
			!strings.EqualFold(au.Hostname(), su.Hostname()) {
			add(adv)
		}
	}
	add(server)
	return out
}

func (c *channel) dialBase(ctx context.Context, base string) (*websocket.Conn, error) {
	u, err := url.Parse(base + "/api/v1/streaming")
	if err != nil {
		return nil, fmt.Errorf("mastodon: streaming URL: %w", err)
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	}
	u.RawQuery = url.Values{"stream": {"user"}}.Encode()
	d := websocket.Dialer{
		Proxy:            http.ProxyFromEnvironment,
		HandshakeTimeout: 15 * time.Second,
		Subprotocols:     []string{c.token},
	}
	hdr := http.Header{"Authorization": {"Bearer " + c.token}, "User-Agent": {userAgent}}
	conn, resp, err := d.DialContext(ctx, u.String(), hdr)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		if resp != nil && resp.StatusCode == http.StatusUnauthorized {
			return nil, sdk.Errorf(sdk.CodeAuthFailed, "mastodon: streaming: the server rejected the access token; run `remora channel add mastodon` again to authorize a new one")
		}
		status := ""
		if resp != nil {
			status = " (" + resp.Status + ")"
		}
		return nil, sdk.Errorf(sdk.CodeUnavailable, "mastodon: streaming at %s%s: %w", u.Host, status, err)
	}
	return conn, nil
}

// maxStreamEvent bounds one streaming message.
const maxStreamEvent = 1 << 20

// streamEvent is one message on the streaming websocket.
type streamEvent struct {
	Event   string          `json:"event"`
	Payload json.RawMessage `json:"payload"`
}

// streamSettle is how long after a stream opens the subscription reads
// notifications over REST once more, unless an event came first. A server
// starts giving a stream events a moment after the websocket opens
// (Mastodon's streaming server subscribes to the account's events after
// the upgrade): a notification made in between is in neither the catch-up
// before nor the stream.
const streamSettle = 2 * time.Second

// stream reads events until the connection drops, ctx ends or the sink
// fails. It catches up once more at the first event or after
// streamSettle, whichever comes first.
func (s *sub) stream(ctx context.Context, conn *websocket.Conn) error {
	done := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(done)
	wg.Go(func() {
		t := time.NewTicker(pingEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				// Say goodbye, so the server logs a normal closure.
				conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
				conn.Close()
				return
			case <-done:
				conn.Close()
				return
			case <-t.C:
				conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(10*time.Second))
			}
		}
	})
	extend := func(string) error { return conn.SetReadDeadline(time.Now().Add(readTimeout)) }
	conn.SetPongHandler(extend)
	// One event is one notification with its status: a few KB. A bigger
	// (or endless) one ends the stream; the subscription reconnects.
	conn.SetReadLimit(maxStreamEvent)
	msgs := make(chan []byte)
	failed := make(chan error, 1)
	wg.Go(func() {
		for {
			extend("")
			_, msg, err := conn.ReadMessage()
			if err != nil {
				failed <- fmt.Errorf("mastodon: stream: %w", err)
				return
			}
			select {
			case msgs <- msg:
			case <-done:
				return
			}
		}
	})
	settle := time.NewTimer(streamSettle)
	defer settle.Stop()
	settled := false
	catchUp := func() error {
		if settled {
			return nil
		}
		settled = true
		return s.catchUp(ctx)
	}
	for {
		select {
		case <-settle.C:
			if err := catchUp(); err != nil {
				return err
			}
		case msg := <-msgs:
			if err := catchUp(); err != nil {
				return err
			}
			if err := s.event(ctx, msg); err != nil {
				return err
			}
		case err := <-failed:
			return err
		}
	}
}

// event handles one streaming message: a "notification" is delivered (or
// skipped, with a cursor-only delivery), a "delete" counted, anything else
// ignored. Only the sink's error is returned.
func (s *sub) event(ctx context.Context, msg []byte) error {
	var ev streamEvent
	if err := json.Unmarshal(msg, &ev); err != nil {
		s.c.counters.ignoredOther.Add(1)
		return nil
	}
	switch ev.Event {
	case "notification":
		var payload string
		if err := json.Unmarshal(ev.Payload, &payload); err != nil {
			s.c.counters.ignoredOther.Add(1)
			return nil
		}
		var n notification
		if err := json.Unmarshal([]byte(payload), &n); err != nil || !validID(n.ID) {
			s.c.counters.ignoredOther.Add(1)
			return nil
		}
		return s.handle(ctx, &n)
	case "delete":
		s.c.counters.deletedSeen.Add(1)
	}
	return nil
}

// catchUp reads mention notifications after the cursor's overlap, oldest
// first, until none is new.
func (s *sub) catchUp(ctx context.Context) error {
	for {
		from := s.cur.from()
		if from == "" {
			from = "0" // the earliest retained
		}
		q := url.Values{"types[]": {"mention"}, "min_id": {from}, "limit": {fmt.Sprint(pageLimit)}}
		var ns []*notification
		if err := getJSON(ctx, s.c.client, s.c.cfg.Server+"/api/v1/notifications?"+q.Encode(), &ns); err != nil {
			return err
		}
		ns = slices.DeleteFunc(ns, func(n *notification) bool { return n == nil || !validID(n.ID) })
		sort.Slice(ns, func(i, j int) bool { return idLess(ns[i].ID, ns[j].ID) })
		fresh := 0
		for _, n := range ns {
			if s.cur.seen(n.ID, "") {
				continue
			}
			fresh++
			if err := s.handle(ctx, n); err != nil {
				return err
			}
		}
		if fresh == 0 || len(ns) < pageLimit {
			return nil
		}
	}
}

// handle delivers one notification: the item it carries, or a cursor-only
// delivery when it carries none (an ordinary mention, a stranger's post).
func (s *sub) handle(ctx context.Context, n *notification) error {
	nid, sid := n.ID, ""
	if n.Status != nil && validID(n.Status.ID) {
		sid = n.Status.ID
	}
	if s.cur.seen(nid, sid) {
		s.c.counters.duplicates.Add(1)
		return nil
	}
	d := sdk.Delivery{}
	if data, from, ok := s.c.accept(n); ok {
		d = sdk.Delivery{ID: sid, Data: []byte(data), From: from, Time: n.Status.CreatedAt}
	}
	s.cur.add(nid, sid)
	d.Cursor = s.cur.encode()
	if err := s.sink.Deliver(ctx, d); err != nil {
		return &sinkError{err}
	}
	if d.Data != nil {
		s.c.counters.deliveries.Add(1)
	}
	return nil
}

// accept returns the item a notification carries and its sender, counting
// what it skips.
func (c *channel) accept(n *notification) (data, from string, ok bool) {
	if n.Type != "mention" || n.Status == nil || n.Status.Reblog != nil || !validID(n.Status.ID) {
		c.counters.ignoredOther.Add(1)
		return "", "", false
	}
	a, valid := parseAcct(n.Status.Account.Acct)
	if !valid {
		c.counters.ignoredStranger.Add(1)
		return "", "", false
	}
	a = a.local(c.inst.domain)
	if !c.known[a.String()] && !c.cfg.AcceptStrangers {
		c.counters.ignoredStranger.Add(1)
		return "", "", false
	}
	b, ok := body(n.Status.plain())
	if !ok {
		c.counters.ignoredPlain.Add(1)
		return "", "", false
	}
	if len(b) > maxForeignItem {
		c.counters.ignoredOversize.Add(1)
		return "", "", false
	}
	return b, a.String(), true
}

// maxForeignItem caps an item read from a status. Members on other
// instances post under their own instance's limit (5,000 characters on
// Pleroma and Akkoma, more on some), so the cap is far above any, not this
// instance's MaxPayload: a status longer than it is junk.
const maxForeignItem = 64 << 10
