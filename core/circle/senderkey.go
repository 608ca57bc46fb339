package circle

import (
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"time"
)

// MaxRatchetSteps bounds how far a chain key is ratcheted in one call, so a
// forged far-future day costs nothing.
const MaxRatchetSteps = 400

// DayOf returns the ratchet day of t: whole days since 1970-01-01 UTC.
func DayOf(t time.Time) uint32 { return uint32(t.Unix() / 86400) }

// chain is one member's broadcast chain key for one epoch, held at Day.
// The key for a later day d is ratchet^(d-Day)(Key); earlier days are gone.
type chain struct {
	Day uint32   `json:"day"`
	Key [32]byte `json:"key"`
}

func ratchet(k [32]byte) [32]byte {
	m := hmac.New(sha256.New, k[:])
	m.Write([]byte("remora/v1/chain-ratchet"))
	var out [32]byte
	copy(out[:], m.Sum(nil))
	return out
}

// at returns the chain key for day d.
func (c chain) at(d uint32) ([32]byte, error) {
	if d < c.Day {
		return [32]byte{}, fmt.Errorf("%w: day %d was deleted (chain starts at day %d)", ErrKeyExpired, d, c.Day)
	}
	if d-c.Day > MaxRatchetSteps {
		return [32]byte{}, fmt.Errorf("%w: day %d is too far ahead", ErrKeyExpired, d)
	}
	k := c.Key
	for i := c.Day; i < d; i++ {
		k = ratchet(k)
	}
	return k, nil
}

// advance moves the chain forward to day d, deleting earlier keys.
func (c *chain) advance(d uint32) {
	if d <= c.Day || d-c.Day > MaxRatchetSteps {
		return
	}
	k, _ := c.at(d)
	c.Key, c.Day = k, d
}

// messageKey is the XChaCha20-Poly1305 key for broadcast envelopes sent on a
// day: HMAC-SHA256(chain key of that day, "remora/v1/message-key").
func messageKey(k [32]byte) [32]byte {
	m := hmac.New(sha256.New, k[:])
	m.Write([]byte("remora/v1/message-key"))
	var out [32]byte
	copy(out[:], m.Sum(nil))
	return out
}

// SenderKey is the key a member encrypts broadcast envelopes with.
type SenderKey struct {
	Epoch Epoch
	Day   uint32
	Key   [32]byte // message key for Day
}
