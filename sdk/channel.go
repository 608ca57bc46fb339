package sdk

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"time"
)

// Adapter is one kind of service. Serve hosts exactly one Adapter per
// process; the host opens any number of channels on it.
type Adapter interface {
	// Info describes the adapter; it must not do I/O.
	Info() Info
	// Configure validates the configuration, connects, and returns the
	// channel. Bad configuration is an error with CodeBadConfig, bad
	// credentials CodeAuthFailed, each with a message a user can act on.
	Configure(ctx context.Context, req ConfigureRequest) (Channel, error)
}

// ConfigureRequest opens one channel instance.
type ConfigureRequest struct {
	// ChannelID is the host's stable name for this instance. Adapters may use
	// it to name state; it is not secret and not shown to the service.
	ChannelID string
	// Config is the channel's configuration as JSON, validated by the adapter.
	Config json.RawMessage
	// Secrets holds this channel's secrets only (passwords, tokens, keys).
	// Never log them.
	Secrets map[string]string
	// StateDir is a private directory that survives restarts (device IDs,
	// pending transaction IDs, clones).
	StateDir string
	// Logger is where the channel logs; Serve routes it to stderr as JSON.
	Logger *slog.Logger
}

// Channel is one configured (service endpoint, account).
//
// All methods may be called concurrently. Publish and Subscribe block; they
// return promptly with ctx.Err() once ctx ends.
type Channel interface {
	// Capabilities are the channel's capabilities as configured. No I/O.
	Capabilities() Capabilities
	// Publish posts a batch. It returns one result per item, in order, so one
	// failure or retry touches one item. An error from Publish itself means
	// no item was attempted.
	Publish(ctx context.Context, req PublishRequest) (PublishResponse, error)
	// Subscribe streams deliveries from req.Cursor on (nil: from the earliest
	// retained item) until ctx ends or an error stops it. Delivery is
	// at-least-once. It calls sink.Deliver one item at a time and goes on only
	// when Deliver returns nil; the host persists the delivery's cursor after
	// it durably accepted the item. A cursor the service can no longer resume
	// from is an error with CodeCursorInvalid; the host then resubscribes
	// with a nil cursor and dedupes.
	Subscribe(ctx context.Context, req SubscribeRequest, sink Sink) error
	// Close releases the channel: calls in flight return promptly (their
	// I/O is cancelled), running Subscribes return, background work stops,
	// and every later call fails with ErrClosed. Closing twice is not an
	// error. The Lifecycle helper does all of this.
	Close() error
}

// PublishItem is one envelope to post.
type PublishItem struct {
	// Data is the envelope: opaque bytes, or armored text on Text channels.
	Data []byte
	// IdempotencyKey is unique per envelope (1 to 64 characters of
	// [A-Za-z0-9_-]: ValidKey). Adapters embed it where the service carries
	// one and may check for it before a retry; an item with an invalid key
	// fails alone with CodeInvalidArgument.
	IdempotencyKey string
	// To optionally addresses the item to service accounts (Capabilities.Addressed).
	To []string
}

// PublishRequest is a batch of items.
type PublishRequest struct {
	Items []PublishItem
}

// PublishResult is the outcome of one item: its ID on the service, or Err.
type PublishResult struct {
	ID  string
	Err error
}

// PublishResponse holds one result per request item, in order.
type PublishResponse struct {
	Results []PublishResult
}

// SubscribeRequest starts a subscription.
type SubscribeRequest struct {
	// Cursor is the opaque cursor of the last durably accepted delivery, or
	// nil to start from the earliest retained item.
	Cursor []byte
}

// Delivery is one item read from the channel.
type Delivery struct {
	// ID is the item's ID on the service (as PublishResult.ID).
	ID string
	// Data is the item as published.
	Data []byte
	// Skip marks a delivery that only moves the cursor past items the
	// adapter skipped (foreign mail, chat messages); it has no Data. Send
	// one when skipping is expensive to redo after a restart. (Protocol 1
	// before Skip existed used empty Data for this; hosts still read an
	// empty Data so, and the kit reports it.)
	Skip bool
	// Cursor resumes the subscription just after this item.
	Cursor []byte
	// From is the service account that posted it, if the service says.
	From string
	// Time is when the service received it, if known.
	Time time.Time
}

// Sink receives deliveries. Deliver returns once the host durably accepted
// the delivery; an error stops the subscription.
type Sink interface {
	Deliver(ctx context.Context, d Delivery) error
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(ctx context.Context, d Delivery) error

func (f SinkFunc) Deliver(ctx context.Context, d Delivery) error { return f(ctx, d) }

// Board is an optional channel capability: the latest value per opaque key
// (a Matrix state event, a file per key in git).
type Board interface {
	// Put stores value under key, replacing the previous value.
	Put(ctx context.Context, req PutRequest) error
	// Get returns the current values of req.Keys, or of every key when
	// req.Keys is empty. Missing keys are absent from the result.
	Get(ctx context.Context, req GetRequest) (GetResponse, error)
}

// PutRequest stores one board value. Key follows the same rule as
// idempotency keys (ValidKey); an invalid one is CodeInvalidArgument.
type PutRequest struct {
	Key   string
	Value []byte
}

// GetRequest reads board values.
type GetRequest struct {
	Keys []string
}

// BoardEntry is one board value.
type BoardEntry struct {
	Key   string
	Value []byte
	// Time is when the value was last written, if known.
	Time time.Time
}

// GetResponse holds the entries found.
type GetResponse struct {
	Entries []BoardEntry
}

// Deleter is an optional channel capability: garbage collection of expired
// or consumed items. Confidentiality never depends on it.
type Deleter interface {
	Delete(ctx context.Context, req DeleteRequest) (DeleteResponse, error)
}

// DeleteRequest names items by the IDs Publish or Subscribe returned.
type DeleteRequest struct {
	IDs []string
}

// DeleteResponse says which IDs could not be deleted. An ID absent from
// Failed is gone (deleting an item that is already gone is success), so an
// adapter that deleted everything returns the zero value.
type DeleteResponse struct {
	// Failed maps an ID that is still there, or that is not this channel's
	// to delete, to why.
	Failed map[string]error
	// Errors is the older form: one error (nil on success) per requested
	// ID, in order. New adapters use Failed; an adapter may still fill
	// Errors instead (then it must have one entry per ID); hosts fill both.
	Errors []error
}

// Fail records that id could not be deleted.
func (r *DeleteResponse) Fail(id string, err error) {
	if r.Failed == nil {
		r.Failed = map[string]error{}
	}
	r.Failed[id] = err
}

// Err returns why id could not be deleted, nil if it is gone. It reads
// Failed, or Errors for ids (the request's IDs, in order) from an adapter
// that still fills it.
func (r DeleteResponse) Err(ids []string, id string) error {
	if err, ok := r.Failed[id]; ok {
		return err
	}
	if len(r.Errors) == len(ids) {
		for i, x := range ids {
			if x == id {
				return r.Errors[i]
			}
		}
	}
	return nil
}

// Healther is an optional channel capability for `remora doctor`.
type Healther interface {
	Health(ctx context.Context) Health
}

// HealthState is a channel's coarse state.
type HealthState string

const (
	HealthOK       HealthState = "ok"
	HealthDegraded HealthState = "degraded"
	HealthDown     HealthState = "down"
)

// Health is a channel's state, a message a user can act on, and counters
// (e.g. "ignored_foreign": items skipped because they were not ours).
type Health struct {
	State    HealthState
	Message  string
	Counters map[string]int64
}

// SecretMarkKey is the ConfigureRequest.Secrets entry the host fills for
// every channel: a key derived from the circle-wide channel ID (MarkKey),
// the same on every member's device. An adapter whose posts need a mark
// to be found among others (a mail in a shared inbox) makes it with this
// key, so only members tell the channel's posts from random text.
const SecretMarkKey = "mark_key"

// MarkKey derives the SecretMarkKey value from a circle-wide channel ID, as
// hex: HKDF-SHA256(IKM = channel ID, info = "remora/v1/adapter mark key",
// L = 32).
func MarkKey(channelID string) string {
	k, err := hkdf.Key(sha256.New, []byte(channelID), nil, "remora/v1/adapter mark key", 32)
	if err != nil {
		panic("sdk: hkdf: " + err.Error()) // only for L > 255·32
	}
	return hex.EncodeToString(k)
}
