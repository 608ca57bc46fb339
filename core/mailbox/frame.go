package mailbox

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Channel is the channel ID envelopes for a mailbox are sealed for: the
// recipient opens what a friend delivers as it would a channel's item.
const Channel = "remora/mailbox"

// Frame types on the live path (see the package documentation).
const frameVersion = 1

// FrameType says what a frame asks.
type FrameType byte

// Frame types.
const (
	FrameDeposit  FrameType = 0x20 // sender → friend: keep this envelope
	FrameDeliver  FrameType = 0x21 // friend → recipient: an envelope kept for you
	FrameRelease  FrameType = 0x22 // recipient or sender → friend: drop these
	FrameRegister FrameType = 0x23 // sleeping device → friend: wake me up
)

// Limits of what a frame may carry.
const (
	// MaxEnvelope is the largest envelope a mailbox takes.
	MaxEnvelope = 1 << 20
	// MaxRelease is the most IDs one release frame names.
	MaxRelease  = 4096
	maxRegister = 2048
)

// ErrMalformed is a frame that does not parse.
var ErrMalformed = errors.New("mailbox: malformed frame")

// Tag names the recipient of a deposit: HMAC-SHA256 under a key derived from
// the circle's epoch secret, of the recipient's peer ID, truncated to 16
// bytes. Only members can compute it; the holder uses it to match deposits
// to the member that connects.
type Tag [16]byte

func (t Tag) String() string { return hex.EncodeToString(t[:]) }

// TagFor computes the tag of recipient under one epoch's secret.
func TagFor(epochSecret []byte, recipient peer.ID) Tag {
	k, err := hkdf.Expand(sha256.New, epochSecret, "remora/v1/mailbox-tag", 32)
	if err != nil {
		panic("mailbox: hkdf: " + err.Error()) // cannot happen for 32 bytes of SHA-256
	}
	m := hmac.New(sha256.New, k)
	m.Write([]byte{byte(len(recipient))})
	m.Write([]byte(recipient))
	var t Tag
	copy(t[:], m.Sum(nil))
	return t
}

// ID names one held envelope: the first 16 bytes of its SHA-256. The same
// bytes deposited with two friends have the same ID, so one release names
// both copies.
type ID [16]byte

func (id ID) String() string { return hex.EncodeToString(id[:]) }

// MarshalText writes the ID in hex (outbox records are JSON).
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText reads a hex ID.
func (id *ID) UnmarshalText(b []byte) error {
	if hex.DecodedLen(len(b)) != len(id) {
		return fmt.Errorf("%w: ID of %d hex digits", ErrMalformed, len(b))
	}
	_, err := hex.Decode(id[:], b)
	return err
}

// IDOf returns the ID of an envelope.
func IDOf(env []byte) ID {
	h := sha256.Sum256(env)
	var id ID
	copy(id[:], h[:])
	return id
}

// Registration asks a friend that stays online to wake this device when
// something arrives for it.
type Registration struct {
	// Endpoint is the device's UnifiedPush endpoint (RFC 8030 push
	// resource); empty for none.
	Endpoint string `json:"endpoint,omitempty"`
	// Channels asks for a wake-up over the circle's push-capable channels.
	Channels bool `json:"channels,omitempty"`
}

// Validate checks the endpoint: an absolute https URL (http only to a
// loopback host, for a distributor on the same machine).
func (r Registration) Validate() error {
	if r.Endpoint == "" {
		if !r.Channels {
			return errors.New("mailbox: a wake-up registration needs an endpoint or channels")
		}
		return nil
	}
	u, err := url.Parse(r.Endpoint)
	if err != nil {
		return fmt.Errorf("mailbox: push endpoint: %w", err)
	}
	switch {
	case u.Scheme == "https" && u.Host != "":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	default:
		return fmt.Errorf("mailbox: push endpoint %q: want an https:// URL (http:// only to localhost)", r.Endpoint)
	}
	if u.User != nil {
		return fmt.Errorf("mailbox: push endpoint %q: credentials in the URL are refused", r.Endpoint)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Frame is one parsed mailbox frame.
type Frame struct {
	Type     FrameType
	Tag      Tag       // deposit
	Expiry   time.Time // deposit
	Envelope []byte    // deposit, deliver
	IDs      []ID      // release
	Register *Registration
}

// IsFrame reports whether raw, received on the live path, is a mailbox
// frame rather than an envelope or a join frame.
func IsFrame(raw []byte) bool {
	return len(raw) >= 2 && raw[0] == frameVersion && FrameType(raw[1]) >= FrameDeposit && FrameType(raw[1]) <= FrameRegister
}

// Deposit asks a friend to keep env for the member tag names until expiry.
func Deposit(tag Tag, expiry time.Time, env []byte) []byte {
	b := make([]byte, 0, 2+16+8+len(env))
	b = append(b, frameVersion, byte(FrameDeposit))
	b = append(b, tag[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(expiry.UnixMilli()))
	return append(b, env...)
}

// Deliver hands a held envelope to its recipient.
func Deliver(env []byte) []byte {
	return append([]byte{frameVersion, byte(FrameDeliver)}, env...)
}

// Release tells a friend that the envelopes named are no longer needed.
func Release(ids []ID) []byte {
	b := binary.AppendUvarint([]byte{frameVersion, byte(FrameRelease)}, uint64(len(ids)))
	for _, id := range ids {
		b = append(b, id[:]...)
	}
	return b
}

// Register asks a friend for wake-ups.
func Register(r Registration) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	j, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("mailbox: registration: %w", err)
	}
	return append([]byte{frameVersion, byte(FrameRegister)}, j...), nil
}

// Parse reads a frame; every length is checked before use.
func Parse(raw []byte) (*Frame, error) {
	if !IsFrame(raw) {
		return nil, ErrMalformed
	}
	f := &Frame{Type: FrameType(raw[1])}
	b := raw[2:]
	switch f.Type {
	case FrameDeposit:
		if len(b) < 16+8+1 || len(b)-24 > MaxEnvelope {
			return nil, fmt.Errorf("%w: deposit of %d bytes", ErrMalformed, len(b))
		}
		copy(f.Tag[:], b)
		ms := binary.BigEndian.Uint64(b[16:])
		if ms > 1<<53 {
			return nil, fmt.Errorf("%w: expiry out of range", ErrMalformed)
		}
		f.Expiry = time.UnixMilli(int64(ms))
		f.Envelope = b[24:]
	case FrameDeliver:
		if len(b) == 0 || len(b) > MaxEnvelope {
			return nil, fmt.Errorf("%w: delivery of %d bytes", ErrMalformed, len(b))
		}
		f.Envelope = b
	case FrameRelease:
		c, k := binary.Uvarint(b)
		if k <= 0 || c == 0 || c > MaxRelease || uint64(len(b)-k) != c*16 {
			return nil, fmt.Errorf("%w: release", ErrMalformed)
		}
		b = b[k:]
		f.IDs = make([]ID, c)
		for i := range f.IDs {
			copy(f.IDs[i][:], b[i*16:])
		}
	case FrameRegister:
		if len(b) > maxRegister {
			return nil, fmt.Errorf("%w: registration of %d bytes", ErrMalformed, len(b))
		}
		r := &Registration{}
		if err := json.Unmarshal(b, r); err != nil {
			return nil, fmt.Errorf("%w: registration: %v", ErrMalformed, err)
		}
		if err := r.Validate(); err != nil {
			return nil, err
		}
		f.Register = r
	}
	return f, nil
}
