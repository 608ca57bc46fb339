package envelope

import (
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/crypto/chacha20poly1305"
)

// DefaultMaxFragments is the largest number of fragments a message may be
// split into, unless a Sealer or Limits says otherwise.
const DefaultMaxFragments = 256

// minSlice is the smallest fragment payload a route must allow: below it the
// per-fragment overhead makes a channel pointless.
const minSlice = 16

// Sealer seals messages into envelopes. The zero value is ready to use.
type Sealer struct {
	// Rand supplies nonces and message IDs; nil means crypto/rand. (HPKE's
	// ephemeral keys always come from crypto/rand: crypto/hpke takes no
	// reader; tests make it deterministic with testing/cryptotest.)
	Rand io.Reader
	// Now is the clock for Draft.Timestamp when unset; nil means time.Now.
	Now func() time.Time
	// MaxFragments caps the fragments per message; 0 means DefaultMaxFragments.
	MaxFragments int
}

// Broadcast seals d for every member of the circle: XChaCha20-Poly1305 under
// messageKey, the sender's current 32-byte message key (derived by package
// circle from its chain key for this epoch), signed by from.
func (s *Sealer) Broadcast(ek *EpochKeys, from Signer, messageKey []byte, d Draft, r Route) (*Sealed, error) {
	if len(messageKey) != chacha20poly1305.KeySize {
		return nil, fmt.Errorf("envelope: seal broadcast: message key is %d bytes, want 32", len(messageKey))
	}
	aead, err := chacha20poly1305.NewX(messageKey)
	if err != nil {
		return nil, fmt.Errorf("envelope: seal broadcast: %w", err)
	}
	enc := func(header, plaintext []byte) ([]byte, error) {
		out := make([]byte, HeaderSize, HeaderSize+len(plaintext)+aead.Overhead())
		copy(out, header)
		return aead.Seal(out, header[HeaderSize-NonceSize:], plaintext, header), nil
	}
	sealed, err := s.seal(ek, from, SuiteBroadcast, "", KeyID{}, d, r, enc)
	if err != nil {
		return nil, fmt.Errorf("envelope: seal broadcast: %w", err)
	}
	return sealed, nil
}

// Direct seals d to one member with HPKE to its box key; the suite follows
// from the key's KEM. The recipient's peer ID and box-key ID are signed, so
// the recipient cannot pass the message off to a third member as if it had
// been sealed to them.
func (s *Sealer) Direct(ek *EpochKeys, from Signer, to Recipient, d Draft, r Route) (*Sealed, error) {
	if to.BoxKey == nil {
		return nil, errors.New("envelope: seal direct: recipient has no box key")
	}
	if err := checkPeerID(to.ID); err != nil {
		return nil, fmt.Errorf("envelope: seal direct: recipient: %w", err)
	}
	suite, err := suiteForKEM(to.BoxKey.KEM().ID())
	if err != nil {
		return nil, fmt.Errorf("envelope: seal direct: %w", err)
	}
	keyID := BoxKeyID(to.BoxKey)
	info := directInfo(ek.Circle, keyID)
	enc := func(header, plaintext []byte) ([]byte, error) {
		encap, snd, err := hpke.NewSender(to.BoxKey, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), info)
		if err != nil {
			return nil, err
		}
		ct, err := snd.Seal(header, plaintext)
		if err != nil {
			return nil, err
		}
		out := make([]byte, 0, len(header)+len(encap)+len(ct))
		out = append(out, header...)
		out = append(out, encap...)
		return append(out, ct...), nil
	}
	sealed, err := s.seal(ek, from, suite, to.ID, keyID, d, r, enc)
	if err != nil {
		return nil, fmt.Errorf("envelope: seal direct: %w", err)
	}
	return sealed, nil
}

// Overhead returns the bytes an envelope of suite adds around a fragment's
// slice of the signed message (header, encapsulation, AEAD tag, frame).
func Overhead(suite Suite) int {
	_, encSize := kemOf(suite)
	return HeaderSize + encSize + aeadTagSize + FrameSize
}

// MessageOverhead returns the bytes a single-fragment message adds to its
// body: Overhead plus the signed fields and the signature (before padding).
func MessageOverhead(suite Suite) int { return Overhead(suite) + FieldsSize + SignatureSize }

// Fragments returns how many envelopes of at most maxSize bytes a body of
// bodyLen bytes needs under suite. It is how a caller checks in advance that
// a channel can carry a message.
func Fragments(suite Suite, bodyLen, maxSize int) (int, error) {
	if suite.Mode() == 0 {
		return 0, fmt.Errorf("envelope: fragments: %w: %v", ErrUnsupported, suite)
	}
	capacity := maxSize - Overhead(suite)
	if capacity < minSlice {
		return 0, fmt.Errorf("envelope: fragments: %w: %v needs at least %d bytes, channel allows %d",
			ErrChannelTooSmall, suite, Overhead(suite)+minSlice, maxSize)
	}
	total := FieldsSize + bodyLen + SignatureSize
	return (total + capacity - 1) / capacity, nil
}

// PaddedSize returns the size an envelope of n bytes is padded to on a
// channel whose largest envelope is maxSize bytes: the next power of two
// from 256 bytes up to 64 KiB, then the next multiple of 64 KiB, never more
// than maxSize.
func PaddedSize(n, maxSize int) int {
	const big = 64 << 10
	b := 256
	for b < n && b < big {
		b <<= 1
	}
	if b < n {
		b = (n + big - 1) / big * big
	}
	if b > maxSize {
		b = maxSize
	}
	if b < n {
		b = n
	}
	return b
}

type encryptFunc func(header, plaintext []byte) ([]byte, error)

func (s *Sealer) seal(ek *EpochKeys, from Signer, suite Suite, rcpt peer.ID, keyID KeyID, d Draft, r Route, encrypt encryptFunc) (*Sealed, error) {
	if ek == nil || ek.tag == nil || ek.hint == nil {
		return nil, errors.New("no epoch keys: build them with NewEpochKeys")
	}
	if err := checkPeerID(from.ID); err != nil {
		return nil, fmt.Errorf("sender: %w", err)
	}
	if len(from.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("sender signing key is not an ed25519 private key")
	}
	if len(r.Channel) > 0xffff {
		return nil, errors.New("channel ID longer than 65535 bytes")
	}
	rnd := s.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	ts := d.Timestamp
	if ts.IsZero() {
		if s.Now != nil {
			ts = s.Now()
		} else {
			ts = time.Now()
		}
	}
	ts = time.UnixMilli(ts.UnixMilli())
	exp := time.UnixMilli(d.Expiry.UnixMilli())
	if ts.UnixMilli() < 0 {
		return nil, errors.New("timestamp before 1970")
	}
	if !exp.After(ts) {
		return nil, fmt.Errorf("expiry %v is not after timestamp %v", d.Expiry, ts)
	}
	id := d.ID
	if id == (MessageID{}) {
		if _, err := io.ReadFull(rnd, id[:]); err != nil {
			return nil, fmt.Errorf("message ID: %w", err)
		}
	}

	n, err := Fragments(suite, len(d.Body), r.MaxSize)
	if err != nil {
		return nil, err
	}
	maxFrag := s.MaxFragments
	if maxFrag <= 0 {
		maxFrag = DefaultMaxFragments
	}
	if n > maxFrag || n > 0xffff {
		return nil, fmt.Errorf("%w: %d-byte body needs %d fragments of at most %d bytes, limit %d",
			ErrTooLarge, len(d.Body), n, r.MaxSize, maxFrag)
	}

	// The signed message M and the signature over context ‖ ID ‖ count ‖ M.
	signed := appendFields(make([]byte, 0, FieldsSize+len(d.Body)+SignatureSize), d.Sequence, ts, exp, d.Kind)
	signed = append(signed, d.Body...)
	input := signatureInput(suite, ek.Circle, ek.Epoch, rcpt, keyID, from.ID, id, uint16(n), signed)
	signed = append(signed, ed25519.Sign(from.Key, input)...)

	capacity := r.MaxSize - Overhead(suite)
	out := &Sealed{ID: id, Timestamp: ts, Expiry: exp, Envelopes: make([][]byte, 0, n)}
	for i := range n {
		slice := signed[i*capacity : min((i+1)*capacity, len(signed))]
		size := PaddedSize(Overhead(suite)+len(slice), r.MaxSize)
		pt := make([]byte, FrameSize+len(slice), size-Overhead(suite)+FrameSize)
		copy(pt, id[:])
		binary.BigEndian.PutUint16(pt[16:], uint16(i))
		binary.BigEndian.PutUint16(pt[18:], uint16(n))
		binary.BigEndian.PutUint32(pt[20:], uint32(len(slice)))
		copy(pt[FrameSize:], slice)
		pt = pt[:cap(pt)] // zero padding

		header := make([]byte, HeaderSize)
		header[0] = Version
		header[1] = byte(suite)
		nonce := header[HeaderSize-NonceSize:]
		if _, err := io.ReadFull(rnd, nonce); err != nil {
			return nil, fmt.Errorf("nonce: %w", err)
		}
		copy(header[2:], ek.routingTag(r.Channel, nonce))
		copy(header[2+TagSize:], ek.senderHint(from.ID, nonce))
		env, err := encrypt(header, pt)
		if err != nil {
			return nil, fmt.Errorf("encrypt: %w", err)
		}
		out.Envelopes = append(out.Envelopes, env)
	}
	return out, nil
}

func checkPeerID(id peer.ID) error {
	if len(id) == 0 || len(id) > 255 {
		return fmt.Errorf("peer ID is %d bytes, want 1..255", len(id))
	}
	return nil
}

// appendFields appends incarnation ‖ number ‖ timestamp ‖ expiry ‖ kind.
func appendFields(b []byte, seq Sequence, ts, exp time.Time, kind Kind) []byte {
	b = binary.BigEndian.AppendUint64(b, seq.Incarnation)
	b = binary.BigEndian.AppendUint64(b, seq.Number)
	b = binary.BigEndian.AppendUint64(b, uint64(ts.UnixMilli()))
	b = binary.BigEndian.AppendUint64(b, uint64(exp.UnixMilli()))
	return binary.BigEndian.AppendUint16(b, uint16(kind))
}

// signatureInput is
//
//	"remora/v1/envelope" ‖ suite ‖ circle ID ‖ epoch ‖ mode
//	‖ [direct: u8 len ‖ recipient peer ID ‖ box-key ID]
//	‖ u8 len ‖ sender peer ID ‖ message ID ‖ u16 fragment count ‖ M
//
// where everything before M is the context the receiver already knows (from
// the tag key that matched, the box key that opened the envelope and the
// sender hint), and M is the signed message exactly as carried.
func signatureInput(suite Suite, circle CircleID, epoch Epoch, rcpt peer.ID, keyID KeyID, sender peer.ID, id MessageID, count uint16, m []byte) []byte {
	b := make([]byte, 0, len(labelSig)+1+64+1+1+len(rcpt)+8+1+len(sender)+16+2+len(m))
	b = append(b, labelSig...)
	b = append(b, byte(suite))
	b = append(b, circle[:]...)
	b = append(b, epoch[:]...)
	mode := suite.Mode()
	b = append(b, byte(mode))
	if mode == ModeDirect {
		b = append(b, byte(len(rcpt)))
		b = append(b, rcpt...)
		b = append(b, keyID[:]...)
	}
	b = append(b, byte(len(sender)))
	b = append(b, sender...)
	b = append(b, id[:]...)
	b = binary.BigEndian.AppendUint16(b, count)
	return append(b, m...)
}
