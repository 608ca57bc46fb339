package envelope

import (
	"crypto/ed25519"
	"crypto/hpke"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Version is the envelope format version, the first byte of every envelope.
const Version = 1

// Sizes of the fixed parts of the format, in bytes.
const (
	TagSize       = 16 // routing tag: HMAC-SHA256(tag key, …) truncated
	HintSize      = 8  // sender hint: HMAC-SHA256(hint key, …) truncated
	NonceSize     = 24 // random per envelope; the XChaCha20-Poly1305 nonce in broadcast mode
	HeaderSize    = 2 + TagSize + HintSize + NonceSize
	FrameSize     = 16 + 2 + 2 + 4 // message ID ‖ index ‖ count ‖ slice length
	FieldsSize    = 8 + 8 + 8 + 8 + 2
	SignatureSize = ed25519.SignatureSize
	aeadTagSize   = 16
)

// Suite says how an envelope is encrypted; it is the second byte on the wire
// and decides the mode.
type Suite uint8

const (
	// SuiteBroadcast: XChaCha20-Poly1305 under the sender's current message
	// key (from its per-epoch chain key), nonce = the header's 24 random bytes.
	SuiteBroadcast Suite = 0x01
	// SuiteDirectX25519: HPKE (RFC 9180) base mode, DHKEM(X25519, HKDF-SHA256),
	// HKDF-SHA256, ChaCha20-Poly1305, to the recipient's X25519 box prekey.
	SuiteDirectX25519 Suite = 0x02
	// SuiteDirectMLKEM768X25519: HPKE base mode with the hybrid post-quantum
	// KEM MLKEM768-X25519, HKDF-SHA256, ChaCha20-Poly1305. Its 1120-byte
	// encapsulation fits only channels with room for it.
	SuiteDirectMLKEM768X25519 Suite = 0x03
)

func (s Suite) String() string {
	switch s {
	case SuiteBroadcast:
		return "broadcast-xchacha20poly1305"
	case SuiteDirectX25519:
		return "direct-hpke-x25519"
	case SuiteDirectMLKEM768X25519:
		return "direct-hpke-mlkem768x25519"
	}
	return fmt.Sprintf("suite(0x%02x)", uint8(s))
}

// Mode returns the mode of a known suite, 0 for an unknown one.
func (s Suite) Mode() Mode {
	switch s {
	case SuiteBroadcast:
		return ModeBroadcast
	case SuiteDirectX25519, SuiteDirectMLKEM768X25519:
		return ModeDirect
	}
	return 0
}

// Mode is broadcast (to every member of the circle) or direct (to one
// member's box key). It is signed.
type Mode uint8

const (
	ModeBroadcast Mode = 0x01
	ModeDirect    Mode = 0x02
)

func (m Mode) String() string {
	switch m {
	case ModeBroadcast:
		return "broadcast"
	case ModeDirect:
		return "direct"
	}
	return fmt.Sprintf("mode(0x%02x)", uint8(m))
}

// Kind says what the body is. Envelope carries and signs it and does not
// interpret it; receivers ignore kinds they do not know (they are not
// forgeries). The values are a registry shared by every remora
// implementation: add new kinds here, never reuse a number.
type Kind uint16

const (
	KindChat         Kind = 0x0001 // an application message
	KindAck          Kind = 0x0002 // a batch of signed acks
	KindPresence     Kind = 0x0003 // a presence record
	KindSenderKey    Kind = 0x0004 // a sender chain key hand-over (direct, or broadcast under the epoch before an add)
	KindKeyQuery     Kind = 0x0005 // "please resend your sender key" (direct only)
	KindRoster       Kind = 0x0006 // roster log operations
	KindPunch        Kind = 0x0007 // hole-punching probe window request
	KindJoin         Kind = 0x0008 // join hand-over (keys, channel descriptions)
	KindPeerExchange Kind = 0x0009 // signed presence records of members (core/pex), live path only
	KindWake         Kind = 0x000A // "connect to your friends": empty, from a friend keeping mail for you (direct only)
	KindRelayList    Kind = 0x000B // a signed relay-list bundle (core/relaylist) a member took from a URL or DNS
	// KindGroupChat is a circle (group) chat message sealed to one member
	// (direct only): its copy for a friend's mailbox, which must not be
	// readable by the friend, who holds the sender's chain key. The
	// recipient takes it as the group message it is: not direct, its
	// sequence number in the sender's group stream.
	KindGroupChat Kind = 0x000C
)

// CircleID names a circle (32 bytes, chosen by package circle).
type CircleID [32]byte

func (c CircleID) String() string { return hex.EncodeToString(c[:]) }

// Epoch names an epoch of a circle: the hash of its roster state.
type Epoch [32]byte

func (e Epoch) String() string { return hex.EncodeToString(e[:]) }

// MessageID is the sender's 128-bit random message ID. (sender, MessageID)
// is the dedupe key.
type MessageID [16]byte

func (m MessageID) String() string { return hex.EncodeToString(m[:]) }

// KeyID names a box prekey: the first 8 bytes of
// SHA-256("remora/v1/prekey-id" ‖ public key bytes), the same derivation as
// package identity. It is derived, never carried in clear.
type KeyID [8]byte

func (k KeyID) String() string { return hex.EncodeToString(k[:]) }

// Sequence is the sender's counter, per (sender, circle) for broadcast and
// per (sender, recipient) for direct envelopes. Incarnation is random and
// changes whenever the counter restarts (new install, restore from backup).
// It is signed and lets receivers detect gaps and order; it is not a replay
// defence (dedupe by message ID is).
type Sequence struct {
	Incarnation uint64
	Number      uint64
}

// Member is a roster entry as the receiver knows it: who may send under an
// epoch and the ed25519 key their envelopes must verify under.
type Member struct {
	ID  peer.ID
	Key ed25519.PublicKey
}

// Signer is the sending device: its peer ID and ed25519 identity key.
type Signer struct {
	ID  peer.ID
	Key ed25519.PrivateKey
}

// Recipient is the member a direct envelope is sealed to. The suite follows
// from BoxKey's KEM (X25519 or MLKEM768-X25519).
type Recipient struct {
	ID     peer.ID
	BoxKey hpke.PublicKey
}

// Route is the channel an envelope is sealed for. The channel ID goes into
// the routing tag, so an envelope only opens on the channel it was sealed
// for; the live path uses LiveChannel.
type Route struct {
	// Channel is the channel's ID as the circle's channel list names it.
	Channel string
	// MaxSize is the largest raw envelope the channel carries, in bytes. For
	// text channels use Armor.MaxEnvelope(max armored characters). Messages
	// that do not fit are split into fragments of at most MaxSize bytes.
	MaxSize int
}

// LiveChannel is the channel ID of the live path (libp2p streams).
const LiveChannel = "remora/live"

// Draft is a message to seal.
type Draft struct {
	Kind Kind
	// ID is the message ID; zero means "draw a random one". Seal the same
	// Draft (same ID and Timestamp) for each channel a message goes to, so
	// that receivers dedupe the copies.
	ID        MessageID
	Sequence  Sequence
	Timestamp time.Time // zero: the Sealer's clock
	Expiry    time.Time // required: after Timestamp
	Body      []byte
}

// Message is an opened, verified envelope (all its fragments).
type Message struct {
	Suite     Suite
	Mode      Mode
	Circle    CircleID
	Epoch     Epoch
	Sender    peer.ID
	Recipient peer.ID // direct only: this device
	BoxKey    KeyID   // direct only: the prekey that opened it
	Kind      Kind
	ID        MessageID
	Sequence  Sequence
	Timestamp time.Time
	Expiry    time.Time
	Body      []byte
	// Fragments is how many envelopes carried the message.
	Fragments int
	// DedupeUntil is how long (sender, ID) must be remembered: after it,
	// a copy fails the timestamp check anyway. See DedupeKey.
	DedupeUntil time.Time
}

// DedupeKey returns the key under which the message is deduplicated.
func (m *Message) DedupeKey() []byte { return DedupeKey(m.Sender, m.ID) }

// Sealed is the result of sealing one message for one route.
type Sealed struct {
	ID        MessageID
	Timestamp time.Time
	Expiry    time.Time
	// Envelopes are the raw envelopes, one per fragment, in order. Each is
	// self-contained: they may travel and arrive in any order.
	Envelopes [][]byte
}
