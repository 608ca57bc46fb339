package envelope

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/hpke"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Keys is what Open needs from the circle and identity packages. Open calls
// it for every envelope, so implementations must be cheap (return cached
// values) and safe for concurrent use. Returned slices are not modified.
type Keys interface {
	// Epochs returns the epochs whose envelopes are accepted now, over all
	// circles this device belongs to: each circle's current epoch first, then
	// older epochs still within their grace window. Envelopes whose tag
	// matches none of them are ErrNotForUs.
	Epochs() []*EpochKeys

	// Members returns who may send under the epoch: its roster, minus members
	// removed since (an old-epoch envelope is accepted only from a sender
	// still in the current roster). The signing key comes from here, never
	// from the envelope. The slice may be shared: the Opener only reads it.
	Members(circle CircleID, epoch Epoch) []Member

	// MessageKeys returns the candidate 32-byte broadcast message keys of
	// sender's chain in that epoch — today's and the earlier days' within the
	// maximum message age, since the daily ratchet may have advanced since
	// the envelope was sealed (newest first). ok is false if no chain key
	// of that sender for that epoch has arrived yet: Open then returns
	// ErrKeyNotYet so the node can hold the envelope.
	MessageKeys(circle CircleID, epoch Epoch, sender peer.ID) (keys [][]byte, ok bool)

	// BoxKeys returns this device's box private keys that may still receive:
	// the current prekey and the previous ones within their grace period.
	// For an identity.BoxKey use hpke.NewDHKEMPrivateKey(bk.Private).
	BoxKeys() []hpke.PrivateKey
}

// EpochKeys are the routing keys of one epoch of one circle, derived from
// the circle's epoch secret. Build them once per epoch with NewEpochKeys and
// keep them; they are immutable.
type EpochKeys struct {
	Circle CircleID
	Epoch  Epoch
	tag    []byte
	hint   []byte
	// Keyed HMAC states, reused through Reset: Open computes one hint per
	// member per envelope.
	tagMACs, hintMACs sync.Pool
}

// Labels of the key derivations (HKDF-SHA256 info strings).
const (
	labelTagKey  = "remora/v1/tag key"
	labelHintKey = "remora/v1/hint key"
	labelKeyID   = "remora/v1/prekey-id"
	labelDirect  = "remora/v1/direct"
	labelSig     = "remora/v1/envelope"
)

// NewEpochKeys derives an epoch's tag key and hint key from the circle's
// epoch secret (at least 32 bytes, uniformly random, provided by package
// circle):
//
//	tag key  = HKDF-SHA256(secret, salt = circle ID ‖ epoch, info = "remora/v1/tag key", 32)
//	hint key = HKDF-SHA256(secret, salt = circle ID ‖ epoch, info = "remora/v1/hint key", 32)
func NewEpochKeys(circle CircleID, epoch Epoch, secret []byte) (*EpochKeys, error) {
	if len(secret) < 32 {
		return nil, fmt.Errorf("envelope: epoch keys: secret is %d bytes, need at least 32", len(secret))
	}
	salt := make([]byte, 0, 64)
	salt = append(salt, circle[:]...)
	salt = append(salt, epoch[:]...)
	tag, err := hkdf.Key(sha256.New, secret, salt, labelTagKey, 32)
	if err != nil {
		return nil, fmt.Errorf("envelope: epoch keys: %w", err)
	}
	hint, err := hkdf.Key(sha256.New, secret, salt, labelHintKey, 32)
	if err != nil {
		return nil, fmt.Errorf("envelope: epoch keys: %w", err)
	}
	return &EpochKeys{Circle: circle, Epoch: epoch, tag: tag, hint: hint}, nil
}

// mac returns a keyed HMAC-SHA256 from pool, reset to its keyed state.
func mac(pool *sync.Pool, key []byte) hash.Hash {
	if m, ok := pool.Get().(hash.Hash); ok {
		m.Reset()
		return m
	}
	return hmac.New(sha256.New, key)
}

// routingTag = HMAC-SHA256(tag key, u16(len(channel)) ‖ channel ‖ nonce)[:16].
func (k *EpochKeys) routingTag(channel string, nonce []byte) []byte {
	m := mac(&k.tagMACs, k.tag)
	defer k.tagMACs.Put(m)
	var l [2]byte
	binary.BigEndian.PutUint16(l[:], uint16(len(channel)))
	m.Write(l[:])
	m.Write([]byte(channel))
	m.Write(nonce)
	var sum [sha256.Size]byte
	return m.Sum(sum[:0])[:TagSize]
}

// senderHint = HMAC-SHA256(hint key, u8(len(sender)) ‖ sender ‖ nonce)[:8].
func (k *EpochKeys) senderHint(sender peer.ID, nonce []byte) []byte {
	m := mac(&k.hintMACs, k.hint)
	defer k.hintMACs.Put(m)
	m.Write([]byte{byte(len(sender))})
	m.Write([]byte(sender))
	m.Write(nonce)
	var sum [sha256.Size]byte
	return m.Sum(sum[:0])[:HintSize]
}

// BoxKeyID derives the key ID of a box public key: the first 8 bytes of
// SHA-256("remora/v1/prekey-id" ‖ pub.Bytes()). For X25519 keys it equals
// identity.KeyIDOf.
func BoxKeyID(pub hpke.PublicKey) KeyID {
	h := sha256.New()
	h.Write([]byte(labelKeyID))
	h.Write(pub.Bytes())
	var id KeyID
	copy(id[:], h.Sum(nil))
	return id
}

// HPKE algorithm identifiers (RFC 9180 and draft-ietf-hpke-pq).
const (
	kemX25519         = 0x0020
	kemMLKEM768X25519 = 0x647a
)

// suiteForKEM maps a recipient box key to its direct suite.
func suiteForKEM(id uint16) (Suite, error) {
	switch id {
	case kemX25519:
		return SuiteDirectX25519, nil
	case kemMLKEM768X25519:
		return SuiteDirectMLKEM768X25519, nil
	}
	return 0, fmt.Errorf("box key KEM 0x%04x: %w", id, errUnknownKEM)
}

var errUnknownKEM = errors.New("no envelope suite for this KEM; use X25519 or MLKEM768-X25519")

// kemOf returns the HPKE KEM ID and encapsulation size of a direct suite.
func kemOf(s Suite) (kem uint16, encSize int) {
	switch s {
	case SuiteDirectX25519:
		return kemX25519, 32
	case SuiteDirectMLKEM768X25519:
		return kemMLKEM768X25519, 1088 + 32
	}
	return 0, 0
}

// directInfo = "remora/v1/direct" ‖ circle ID ‖ recipient key ID.
func directInfo(circle CircleID, key KeyID) []byte {
	info := make([]byte, 0, len(labelDirect)+32+8)
	info = append(info, labelDirect...)
	info = append(info, circle[:]...)
	return append(info, key[:]...)
}
