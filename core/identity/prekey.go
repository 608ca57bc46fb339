package identity

import (
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// PrekeySize is the length of a marshalled prekey.
const PrekeySize = 1 + 32 + 8 + 8 + 64

const prekeyVersion = 1

// KeyID names a box prekey: the first 8 bytes of SHA-256("remora/v1/prekey-id" ‖ public key).
type KeyID [8]byte

func (k KeyID) String() string { return hex.EncodeToString(k[:]) }

// KeyIDOf derives the key ID of an X25519 public key.
func KeyIDOf(pub *ecdh.PublicKey) KeyID {
	h := sha256.New()
	h.Write([]byte("remora/v1/prekey-id"))
	h.Write(pub.Bytes())
	var id KeyID
	copy(id[:], h.Sum(nil))
	return id
}

// Prekey is a signed X25519 box public key.
type Prekey struct {
	Public  *ecdh.PublicKey
	Created time.Time
	Expires time.Time
	Sig     []byte
}

// ErrMalformedPrekey means prekey bytes could not be parsed.
var ErrMalformedPrekey = errors.New("identity: malformed prekey")

// ID is the prekey's key ID.
func (p Prekey) ID() KeyID { return KeyIDOf(p.Public) }

func (p Prekey) body() []byte {
	b := make([]byte, 0, PrekeySize)
	b = append(b, prekeyVersion)
	b = append(b, p.Public.Bytes()...)
	b = binary.BigEndian.AppendUint64(b, uint64(p.Created.Unix()))
	b = binary.BigEndian.AppendUint64(b, uint64(p.Expires.Unix()))
	return b
}

func prekeySigned(owner peer.ID, body []byte) []byte {
	m := []byte("remora/v1/prekey\x00")
	m = append(m, owner...)
	return append(m, body...)
}

// Marshal returns the PrekeySize-byte wire form.
func (p Prekey) Marshal() []byte { return append(p.body(), p.Sig...) }

// ParsePrekey decodes a prekey. It does not verify the signature: call Verify
// with the owner's peer ID.
func ParsePrekey(b []byte) (Prekey, error) {
	if len(b) != PrekeySize || b[0] != prekeyVersion {
		return Prekey{}, fmt.Errorf("%w: %d bytes", ErrMalformedPrekey, len(b))
	}
	pub, err := ecdh.X25519().NewPublicKey(b[1:33])
	if err != nil {
		return Prekey{}, fmt.Errorf("%w: %v", ErrMalformedPrekey, err)
	}
	created := int64(binary.BigEndian.Uint64(b[33:41]))
	expires := int64(binary.BigEndian.Uint64(b[41:49]))
	if created < 0 || expires < created {
		return Prekey{}, fmt.Errorf("%w: expiry before creation", ErrMalformedPrekey)
	}
	return Prekey{
		Public:  pub,
		Created: time.Unix(created, 0).UTC(),
		Expires: time.Unix(expires, 0).UTC(),
		Sig:     append([]byte(nil), b[49:]...),
	}, nil
}

// Verify checks that owner signed p.
func (p Prekey) Verify(owner peer.ID) error {
	if p.Public == nil {
		return ErrMalformedPrekey
	}
	if err := Verify(owner, prekeySigned(owner, p.body()), p.Sig); err != nil {
		return fmt.Errorf("identity: prekey %s of %s: %w", p.ID(), owner, err)
	}
	return nil
}

// SignPrekey signs an X25519 public key valid from created until expires.
func (i *Identity) SignPrekey(pub *ecdh.PublicKey, created, expires time.Time) Prekey {
	p := Prekey{Public: pub, Created: created.Truncate(time.Second).UTC(), Expires: expires.Truncate(time.Second).UTC()}
	p.Sig = i.Sign(prekeySigned(i.id, p.body()))
	return p
}

// BoxKey is a prekey with its private half.
type BoxKey struct {
	Prekey
	Private *ecdh.PrivateKey
}
