package sdk

import (
	"fmt"
	"time"
)

// ProtocolVersion is the version of the adapter wire protocol (the gRPC
// service remora.adapter.v1). The host and an adapter must agree on it.
const ProtocolVersion = 1

// Info describes an adapter kind. It is static: computing it does no I/O.
type Info struct {
	// Name is the adapter kind, e.g. "imap". Lowercase letters, digits, '-'.
	Name string `json:"name"`
	// Version is the adapter's own version, free form.
	Version string `json:"version"`
	// Summary is one line for `remora adapter list`.
	Summary string `json:"summary,omitempty"`
	// Defaults are the capabilities a channel of this kind has unless its
	// configuration changes them (Channel.Capabilities is authoritative).
	Defaults Capabilities `json:"defaults"`
}

// Counting names how a service counts the length of a post.
type Counting string

const (
	// CountBytes: the limit is in bytes (binary-safe channels: dir, git).
	CountBytes Counting = "bytes"
	// CountCodepoints: the limit is in Unicode code points (Matrix, mail lines).
	CountCodepoints Counting = "codepoints"
	// CountMastodon: Mastodon's rule: code points, URLs count as 23, a mention
	// counts only its local part.
	CountMastodon Counting = "mastodon"
)

// DeleteScope says which items a channel can delete.
type DeleteScope string

const (
	DeleteNone DeleteScope = "none"
	DeleteOwn  DeleteScope = "own"
	DeleteAny  DeleteScope = "any"
)

// IdempotencyLevel is what the channel promises when the same idempotency key
// is published twice.
type IdempotencyLevel string

const (
	// IdempotencyStrong: a repeated key never produces a second item.
	IdempotencyStrong IdempotencyLevel = "strong"
	// IdempotencyWindow: a repeated key within Idempotency.Window produces no
	// second item; later it may.
	IdempotencyWindow IdempotencyLevel = "window"
	// IdempotencyNone: repeats may duplicate; core dedupe removes them.
	IdempotencyNone IdempotencyLevel = "none"
)

// Idempotency is a channel's declared idempotency level; the conformance kit
// tests exactly this.
type Idempotency struct {
	Level  IdempotencyLevel `json:"level"`
	Window Duration         `json:"window,omitempty"`
}

// RateLimit is a service's published limit: Requests per Per. Zero means none
// known. Core paces by it and by RateLimited errors.
type RateLimit struct {
	Requests int      `json:"requests,omitempty"`
	Per      Duration `json:"per,omitempty"`
}

// Capabilities are what one configured channel can do.
type Capabilities struct {
	// MaxPayload is the largest item Publish accepts, in units of Counting.
	// For text channels it is counted on the armored form.
	MaxPayload int `json:"max_payload"`
	// Counting is the rule MaxPayload is counted by.
	Counting Counting `json:"counting"`
	// Text is true when the service carries text only: core armors envelopes
	// (base64url with a per-channel prefix) before Publish, and items arrive
	// in Subscribe as that same text.
	Text bool `json:"text"`
	// MaxBatch is the most items one Publish call may carry (0: no limit).
	MaxBatch int `json:"max_batch,omitempty"`
	// Board is true when the channel implements Board.
	Board bool `json:"board"`
	// Push is true when Subscribe learns of new items without polling
	// (IMAP IDLE, Matrix long poll, a websocket).
	Push bool `json:"push"`
	// PollInterval is the minimum polling interval when Push is false.
	PollInterval Duration `json:"poll_interval,omitempty"`
	// Latency is the typical publish-to-delivery latency; core sends punch
	// probe windows only over channels with Push and Latency under ~2 s.
	Latency Duration `json:"latency,omitempty"`
	// Retention is how long the service keeps items (0: unknown or forever).
	Retention Duration `json:"retention,omitempty"`
	// Addressed is true when PublishItem.To is honoured (mail to members,
	// Mastodon mentions).
	Addressed bool `json:"addressed"`
	// Delete says which items Deleter.Delete can remove.
	Delete DeleteScope `json:"delete"`
	// Idempotency is the declared idempotency level.
	Idempotency Idempotency `json:"idempotency"`
	// RateLimit is the service's published rate limit, if any.
	RateLimit RateLimit `json:"rate_limit,omitempty"`
}

// Validate reports capabilities that no host can work with.
func (c Capabilities) Validate() error {
	switch {
	case c.MaxPayload <= 0:
		return fmt.Errorf("capabilities: max_payload must be positive, got %d", c.MaxPayload)
	case c.Counting != CountBytes && c.Counting != CountCodepoints && c.Counting != CountMastodon:
		return fmt.Errorf("capabilities: unknown counting rule %q", c.Counting)
	case c.Delete != DeleteNone && c.Delete != DeleteOwn && c.Delete != DeleteAny:
		return fmt.Errorf("capabilities: unknown delete scope %q", c.Delete)
	}
	switch c.Idempotency.Level {
	case IdempotencyStrong, IdempotencyNone:
	case IdempotencyWindow:
		if c.Idempotency.Window <= 0 {
			return fmt.Errorf("capabilities: idempotency window needs a positive window")
		}
	default:
		return fmt.Errorf("capabilities: unknown idempotency level %q", c.Idempotency.Level)
	}
	return nil
}

// Duration is a time.Duration that reads and writes as a Go duration string
// ("90s") in JSON.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	*d = Duration(v)
	return nil
}
