package node

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/remora-p2p/remora/core/delivery"
	"github.com/remora-p2p/remora/core/envelope"
	"github.com/remora-p2p/remora/sdk"
)

// Channel is one configured channel the node carries envelopes on.
type Channel struct {
	// Name is the local name ("git-main"); cursors are stored under it.
	Name string
	// ID is the circle-wide channel ID, the same for every member (it is
	// hashed into routing tags). Default: Name.
	ID string
	// Adapter is the adapter kind ("dir", "imap", ...), for display.
	Adapter string
	// Impl is the configured channel (in-process or through plugins).
	Impl sdk.Channel
	// To are the service addresses items go to on an addressed channel
	// (mail in direct mode: the members' mail addresses). Empty leaves it
	// to the adapter's own configuration (Mastodon's accounts).
	To []string
	// Err, when set, says why the channel could not be configured: the node
	// does not run it but reports it (with advice) to doctor.
	Err error
}

// channel is a running Channel.
type channel struct {
	Channel
	caps   sdk.Capabilities
	armor  envelope.Armor // keyed by ID: cloaks items on every channel, armors them on text ones
	pacer  *delivery.Pacer
	maxEnv int // largest raw envelope, bytes

	mu        sync.Mutex
	lastErr   error
	state     sdk.HealthState
	boardSeen map[string][32]byte // board key -> hash of the value last processed

	received, published atomic.Int64
	// messages counts the chat messages (a copy per recipient, if direct)
	// every envelope of which the channel took; published counts envelopes
	// of every kind (presence, acks, keys too).
	messages atomic.Int64
}

func newChannel(c Channel) (*channel, error) {
	if c.ID == "" {
		c.ID = c.Name
	}
	ch := &channel{Channel: c, caps: c.Impl.Capabilities(), armor: envelope.NewArmor(c.ID), state: sdk.HealthOK, boardSeen: map[string][32]byte{}}
	if err := ch.caps.Validate(); err != nil {
		return nil, fmt.Errorf("channel %s: %w", c.Name, err)
	}
	ch.maxEnv = ch.caps.MaxPayload
	if ch.caps.Text {
		ch.maxEnv = ch.armor.MaxEnvelope(ch.caps.MaxPayload)
	}
	ch.pacer = delivery.NewPacer(delivery.PacerOptions{
		RateLimit: ch.caps.RateLimit,
		MaxBatch:  max(ch.caps.MaxBatch, 0),
		Linger:    5 * time.Millisecond,
	})
	return ch, nil
}

func (c *channel) route() envelope.Route { return envelope.Route{Channel: c.ID, MaxSize: c.maxEnv} }

// encode turns an envelope (or join frame) into what the channel carries:
// cloaked, and armored on text channels, so that no value is the same in
// every post (docs/protocol.md §8).
func (c *channel) encode(env []byte) []byte {
	if c.caps.Text {
		return []byte(c.armor.Encode(env))
	}
	return c.armor.Key().Cloak(env)
}

// decode finds the envelopes in an item as delivered, revealed.
func (c *channel) decode(data []byte) [][]byte {
	if len(data) == 0 {
		return nil
	}
	if c.caps.Text {
		return c.armor.Find(string(data))
	}
	return [][]byte{c.armor.Key().Cloak(data)}
}

// idempotencyKey is stable for an envelope, so a retried publish of the same
// bytes is recognised by the service.
func idempotencyKey(env []byte) string {
	h := sha256.Sum256(env)
	return base64.RawURLEncoding.EncodeToString(h[:18])
}

func (c *channel) setErr(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastErr = err
	switch {
	case err == nil:
		c.state = sdk.HealthOK
	case sdk.CodeOf(err).Retryable():
		c.state = sdk.HealthDegraded
	default:
		c.state = sdk.HealthDown
	}
}

func (c *channel) health() (sdk.HealthState, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state, c.lastErr
}

// publish queues envelopes; done (optional) gets each result. Items go to
// the channel's To on addressed channels.
func (c *channel) publish(envs [][]byte, prio delivery.Priority, replace string, done func(sdk.PublishResult)) {
	var to []string
	if c.caps.Addressed {
		to = c.To
	}
	for i, env := range envs {
		rep := ""
		if replace != "" && len(envs) == 1 {
			rep = replace
		} else if replace != "" {
			rep = fmt.Sprintf("%s#%d", replace, i)
		}
		c.pacer.Enqueue(&delivery.Job{
			Priority: prio,
			Replace:  rep,
			Item:     sdk.PublishItem{Data: c.encode(env), IdempotencyKey: idempotencyKey(env), To: to},
			Done: func(r sdk.PublishResult) {
				if r.Err == nil {
					c.published.Add(1)
				} else if !errors.Is(r.Err, delivery.ErrReplaced) {
					c.setErr(r.Err)
				}
				if done != nil {
					done(r)
				}
			},
		})
	}
}

// receiver is what a channel hands its envelopes to; it returns once the
// envelope is durably handled (or deliberately dropped).
type receiver func(ctx context.Context, c *channel, from string, raw []byte) error

// subscribe runs the channel's subscription until ctx ends, resuming from the
// stored cursor, resubscribing after transient failures with backoff and from
// scratch after a cursor-invalid error.
func (c *channel) subscribe(ctx context.Context, log *slog.Logger, cursors cursorStore, recv receiver) {
	backoff := 250 * time.Millisecond
	unknown := 0 // CodeUnknown failures in a row
	saver := newCursorSaver(cursors, c.Name, cursorEvery)
	for ctx.Err() == nil {
		cur, err := cursors.Cursor(c.Name)
		if err != nil {
			log.Error("channel cursor unreadable", "channel", c.Name, "err", err)
			return
		}
		err = c.Impl.Subscribe(ctx, sdk.SubscribeRequest{Cursor: cur}, sdk.SinkFunc(func(ctx context.Context, d sdk.Delivery) error {
			for _, raw := range c.decode(d.Data) {
				if err := recv(ctx, c, d.From, raw); err != nil {
					return err
				}
			}
			if d.Cursor != nil {
				if err := saver.put(d.Cursor); err != nil {
					return fmt.Errorf("save cursor: %w", err)
				}
			}
			backoff, unknown = 250*time.Millisecond, 0
			c.setErr(nil)
			return nil
		}))
		if ferr := saver.flush(); ferr != nil {
			log.Error("save channel cursor", "channel", c.Name, "err", ferr)
		}
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, sdk.ErrCursorInvalid) {
			log.Warn("channel cursor invalid: rescanning from the earliest retained item", "channel", c.Name)
			if err := cursors.PutCursor(c.Name, nil); err != nil {
				log.Error("reset cursor", "channel", c.Name, "err", err)
				return
			}
			continue
		}
		if err == nil {
			err = errors.New("subscription ended")
		}
		c.setErr(err)
		code := sdk.CodeOf(err)
		if code == sdk.CodeUnknown {
			unknown++
		} else {
			unknown = 0
		}
		switch {
		case code == sdk.CodeAuthFailed || code == sdk.CodeBadConfig || code == sdk.CodeNeedsUserAction || code == sdk.CodeInvalidArgument:
			log.Error("channel needs the user", "channel", c.Name, "err", err)
			backoff = 5 * time.Minute
		case unknown >= sdk.MaxUnknownRetries:
			// An unclassified error that keeps coming back is no outage:
			// slow down to the pace of errors that need the user.
			log.Error("channel subscription keeps failing with an unclassified error", "channel", c.Name, "err", err, "attempts", unknown)
			backoff = 5 * time.Minute
		default:
			log.Warn("channel subscription failed; retrying", "channel", c.Name, "err", err, "in", backoff)
		}
		wait := max(backoff, sdk.RetryAfterOf(err))
		if sdk.Sleep(ctx, jitter(wait)) != nil {
			return
		}
		backoff = min(2*backoff, time.Minute)
	}
}

// pollBoard reads the board entries named by keys (the presence slots of
// the node's circles, never the whole board: anyone who can write to the
// service can fill it with junk) and hands changed ones to recv.
func (c *channel) pollBoard(ctx context.Context, keys []string, recv receiver) error {
	b, ok := c.Impl.(sdk.Board)
	if !ok || !c.caps.Board || len(keys) == 0 {
		return nil
	}
	resp, err := b.Get(ctx, sdk.GetRequest{Keys: keys})
	if err != nil {
		return fmt.Errorf("board get: %w", err)
	}
	for _, e := range resp.Entries {
		h := sha256.Sum256(e.Value)
		c.mu.Lock()
		seen := c.boardSeen[e.Key] == h
		c.mu.Unlock()
		if seen {
			continue
		}
		for _, raw := range c.decode(e.Value) {
			if err := recv(ctx, c, "", raw); err != nil {
				return err
			}
		}
		c.mu.Lock()
		c.boardSeen[e.Key] = h
		c.mu.Unlock()
	}
	return nil
}

// jitter returns d ± 10 %, coalesced with the node's other slow timers
// (idle.go).
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return coalesce(d + time.Duration(rand.Int64N(int64(d)/5+1)) - d/10)
}

// cursorStore persists channel cursors.
type cursorStore interface {
	Cursor(channel string) ([]byte, error)
	PutCursor(channel string, cursor []byte) error
}
