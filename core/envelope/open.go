package envelope

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/hpke"
	"encoding/binary"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/crypto/chacha20poly1305"
)

// Defaults of OpenOptions.
const (
	DefaultMaxAge  = 14 * 24 * time.Hour
	DefaultMaxSkew = 10 * time.Minute
)

// OpenOptions configure an Opener. Zero fields take the defaults.
type OpenOptions struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// MaxAge: messages whose timestamp is older than now − MaxAge − MaxSkew
	// are ErrExpired, whatever their expiry says.
	MaxAge time.Duration
	// MaxSkew is the clock difference tolerated between members.
	MaxSkew time.Duration
	// Reassembly bounds the fragments held for incomplete messages.
	Reassembly Limits
	// Replay, if set, is consulted after a message verified: a (sender,
	// message ID) seen before is ErrReplay. Leave it nil when the caller
	// dedupes itself (the node does, in the inbox transaction, with
	// Message.DedupeKey and Message.DedupeUntil).
	Replay ReplayStore
}

// Opener opens envelopes for one device. It is safe for concurrent use.
type Opener struct {
	keys    Keys
	self    peer.ID
	now     func() time.Time
	maxAge  time.Duration
	maxSkew time.Duration
	reasm   *Reassembler
	replay  ReplayStore
}

// NewOpener returns an Opener for the device self, taking keys from keys.
func NewOpener(keys Keys, self peer.ID, opts OpenOptions) *Opener {
	o := &Opener{keys: keys, self: self, now: opts.Now, maxAge: opts.MaxAge, maxSkew: opts.MaxSkew, replay: opts.Replay}
	if o.now == nil {
		o.now = time.Now
	}
	if o.maxAge <= 0 {
		o.maxAge = DefaultMaxAge
	}
	if o.maxSkew <= 0 {
		o.maxSkew = DefaultMaxSkew
	}
	o.reasm = NewReassembler(opts.Reassembly, o.now)
	return o
}

// Reassembler returns the Opener's reassembler (for its counters).
func (o *Opener) Reassembler() *Reassembler { return o.reasm }

// Open authenticates, decrypts and verifies the raw envelope received on
// channel (the same channel ID the sender sealed for; LiveChannel for the
// live path). In order:
//
//  1. version and suite (ErrUnsupported), size (ErrMalformed);
//  2. the epoch whose tag key reproduces the routing tag (else ErrNotForUs);
//  3. the members whose hint matches (else ErrNotMember);
//  4. decryption: broadcast under the sender's candidate message keys (none
//     arrived: ErrKeyNotYet; none opens it: ErrForged), direct under this
//     device's box keys (none opens it: ErrNotForUs);
//  5. the fragment frame (ErrMalformed); a fragment of a longer message is
//     held (ErrPending) until the last one arrives;
//  6. the signature over the context and the signed bytes as carried
//     (ErrForged) — only then are the signed fields parsed;
//  7. time window (ErrExpired, ErrFuture) and, if configured, replay
//     (ErrReplay).
//
// Every error is an *OpenError. Open never modifies raw.
func (o *Opener) Open(channel string, raw []byte) (*Message, error) {
	if len(raw) < 2 {
		return nil, openErr(ErrMalformed, "%d bytes", len(raw))
	}
	if raw[0] != Version {
		return nil, openErr(ErrUnsupported, "version %d, this implementation speaks %d", raw[0], Version)
	}
	suite := Suite(raw[1])
	mode := suite.Mode()
	if mode == 0 {
		return nil, openErr(ErrUnsupported, "%v", suite)
	}
	if len(raw) < Overhead(suite) {
		return nil, openErr(ErrMalformed, "%d bytes, a %v envelope has at least %d", len(raw), suite, Overhead(suite))
	}
	header := raw[:HeaderSize]
	tag := raw[2 : 2+TagSize]
	hint := raw[2+TagSize : 2+TagSize+HintSize]
	nonce := raw[HeaderSize-NonceSize : HeaderSize]

	var ek *EpochKeys
	for _, e := range o.keys.Epochs() {
		if e == nil || e.tag == nil {
			continue
		}
		if hmac.Equal(e.routingTag(channel, nonce), tag) {
			ek = e
			break
		}
	}
	if ek == nil {
		return nil, openErr(ErrNotForUs, "no accepted epoch matches the routing tag")
	}
	var id MessageID // set once the frame is parsed
	fail := func(sentinel error, sender peer.ID, format string, args ...any) error {
		e := openErr(sentinel, format, args...)
		e.Circle, e.Epoch, e.Sender, e.ID = ek.Circle, ek.Epoch, sender, id
		return e
	}

	var candidates []Member
	for _, m := range o.keys.Members(ek.Circle, ek.Epoch) {
		if len(m.ID) > 0 && len(m.ID) <= 255 && hmac.Equal(ek.senderHint(m.ID, nonce), hint) {
			candidates = append(candidates, m)
		}
	}
	if len(candidates) == 0 {
		return nil, fail(ErrNotMember, "", "sender hint matches no member of epoch %v", ek.Epoch)
	}

	var (
		pt     []byte
		keyID  KeyID
		rcpt   peer.ID
		opened bool
	)
	switch mode {
	case ModeBroadcast:
		var notYet peer.ID
		for _, m := range candidates {
			keys, ok := o.keys.MessageKeys(ek.Circle, ek.Epoch, m.ID)
			if !ok {
				notYet = m.ID
				continue
			}
			for _, k := range keys {
				aead, err := chacha20poly1305.NewX(k)
				if err != nil {
					continue
				}
				if p, err := aead.Open(nil, nonce, raw[HeaderSize:], header); err == nil {
					pt, opened = p, true
					break
				}
			}
			if opened {
				// The sender is the one whose message key opened it.
				var same []Member
				for _, c := range candidates {
					if c.ID == m.ID {
						same = append(same, c)
					}
				}
				candidates = same
				break
			}
		}
		if !opened {
			if notYet != "" {
				return nil, fail(ErrKeyNotYet, notYet, "no chain key of %v for epoch %v yet", notYet, ek.Epoch)
			}
			return nil, fail(ErrForged, candidates[0].ID, "no message key of the sender opens it")
		}
	case ModeDirect:
		kem, encSize := kemOf(suite)
		encap := raw[HeaderSize : HeaderSize+encSize]
		for _, bk := range o.keys.BoxKeys() {
			if bk == nil || bk.KEM().ID() != kem {
				continue
			}
			id := BoxKeyID(bk.PublicKey())
			r, err := hpke.NewRecipient(encap, bk, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), directInfo(ek.Circle, id))
			if err != nil {
				continue
			}
			if p, err := r.Open(header, raw[HeaderSize+encSize:]); err == nil {
				pt, keyID, rcpt, opened = p, id, o.self, true
				break
			}
		}
		if !opened {
			return nil, fail(ErrNotForUs, candidates[0].ID, "none of our %v box keys opens this direct envelope", suite)
		}
	}

	// The frame: message ID ‖ index ‖ count ‖ slice length ‖ slice ‖ zeros.
	if len(pt) < FrameSize {
		return nil, fail(ErrMalformed, candidates[0].ID, "plaintext shorter than the fragment frame")
	}
	copy(id[:], pt)
	index := int(binary.BigEndian.Uint16(pt[16:]))
	count := int(binary.BigEndian.Uint16(pt[18:]))
	n := binary.BigEndian.Uint32(pt[20:])
	if uint64(n) > uint64(len(pt)-FrameSize) {
		return nil, fail(ErrMalformed, candidates[0].ID, "slice length %d exceeds the plaintext", n)
	}
	slice := pt[FrameSize : FrameSize+int(n)]
	for _, b := range pt[FrameSize+int(n):] {
		if b != 0 {
			return nil, fail(ErrMalformed, candidates[0].ID, "non-zero padding")
		}
	}
	if count == 0 || index >= count {
		return nil, fail(ErrMalformed, candidates[0].ID, "fragment %d of %d", index, count)
	}

	signed := slice
	if count > 1 {
		// Fragments join only with fragments of the same message sealed for
		// the same channel (a message sealed for two channels of different
		// sizes is sliced differently) by the same sender in the same epoch.
		key := make([]byte, 0, 2+len(channel)+32+32+1+8+1+len(candidates[0].ID)+16+2)
		key = binary.BigEndian.AppendUint16(key, uint16(len(channel)))
		key = append(key, channel...)
		key = append(key, ek.Circle[:]...)
		key = append(key, ek.Epoch[:]...)
		key = append(key, byte(suite))
		key = append(key, keyID[:]...)
		key = append(key, byte(len(candidates[0].ID)))
		key = append(key, candidates[0].ID...)
		key = append(key, id[:]...)
		key = binary.BigEndian.AppendUint16(key, uint16(count))
		whole, done, err := o.reasm.Add(string(key), index, count, slice)
		if err != nil {
			return nil, fail(err, candidates[0].ID, "fragment %d of %d of message %v", index, count, id)
		}
		if !done {
			return nil, fail(ErrPending, candidates[0].ID, "fragment %d of %d of message %v", index, count, id)
		}
		signed = whole
		// The reassembly key named this sender.
		var same []Member
		for _, c := range candidates {
			if c.ID == candidates[0].ID {
				same = append(same, c)
			}
		}
		candidates = same
	}

	// Verify before parsing: M ‖ signature, M exactly as carried.
	if len(signed) < FieldsSize+SignatureSize {
		return nil, fail(ErrMalformed, candidates[0].ID, "signed message of %d bytes", len(signed))
	}
	msg, sig := signed[:len(signed)-SignatureSize], signed[len(signed)-SignatureSize:]
	var sender *Member
	for i, m := range candidates {
		if len(m.Key) != ed25519.PublicKeySize {
			continue
		}
		if ed25519.Verify(m.Key, signatureInput(suite, ek.Circle, ek.Epoch, rcpt, keyID, m.ID, id, uint16(count), msg), sig) {
			sender = &candidates[i]
			break
		}
	}
	if sender == nil {
		return nil, fail(ErrForged, candidates[0].ID, "signature does not verify")
	}

	m := &Message{
		Suite:     suite,
		Mode:      mode,
		Circle:    ek.Circle,
		Epoch:     ek.Epoch,
		Sender:    sender.ID,
		Recipient: rcpt,
		BoxKey:    keyID,
		ID:        id,
		Fragments: count,
		Sequence: Sequence{
			Incarnation: binary.BigEndian.Uint64(msg[0:]),
			Number:      binary.BigEndian.Uint64(msg[8:]),
		},
		Timestamp: time.UnixMilli(int64(binary.BigEndian.Uint64(msg[16:]))),
		Expiry:    time.UnixMilli(int64(binary.BigEndian.Uint64(msg[24:]))),
		Kind:      Kind(binary.BigEndian.Uint16(msg[32:])),
		Body:      msg[FieldsSize:len(msg):len(msg)],
	}
	if !m.Expiry.After(m.Timestamp) {
		return nil, fail(ErrMalformed, sender.ID, "expiry %v not after timestamp %v", m.Expiry, m.Timestamp)
	}
	now := o.now()
	switch {
	case m.Timestamp.After(now.Add(o.maxSkew)):
		return nil, fail(ErrFuture, sender.ID, "timestamp %v, now %v", m.Timestamp.UTC(), now.UTC())
	case now.After(m.Expiry.Add(o.maxSkew)):
		return nil, fail(ErrExpired, sender.ID, "expired at %v, now %v", m.Expiry.UTC(), now.UTC())
	case m.Timestamp.Before(now.Add(-o.maxAge - o.maxSkew)):
		return nil, fail(ErrExpired, sender.ID, "timestamp %v older than the maximum age %v", m.Timestamp.UTC(), o.maxAge)
	}
	until := m.Expiry
	if limit := m.Timestamp.Add(o.maxAge); limit.Before(until) {
		until = limit
	}
	m.DedupeUntil = until.Add(o.maxSkew)
	if o.replay != nil {
		seen, err := o.replay.Remember(m.DedupeKey(), m.DedupeUntil)
		if err != nil {
			return nil, fail(ErrReplay, sender.ID, "replay store: %v", err)
		}
		if seen {
			return nil, fail(ErrReplay, sender.ID, "message %v already accepted", m.ID)
		}
	}
	return m, nil
}
