package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Identity is a device's long-term ed25519 key. Its public half is the
// device's libp2p peer ID. It is never copied to another device.
type Identity struct {
	priv ed25519.PrivateKey
	id   peer.ID
	lp   crypto.PrivKey
}

// Generate makes a new identity from r (crypto/rand when r is nil).
func Generate(r io.Reader) (*Identity, error) {
	if r == nil {
		r = rand.Reader
	}
	_, priv, err := ed25519.GenerateKey(r)
	if err != nil {
		return nil, fmt.Errorf("identity: generate: %w", err)
	}
	return FromPrivateKey(priv)
}

// FromPrivateKey wraps an existing ed25519 private key.
func FromPrivateKey(priv ed25519.PrivateKey) (*Identity, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("identity: private key is %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	lp, err := crypto.UnmarshalEd25519PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("identity: libp2p key: %w", err)
	}
	id, err := peer.IDFromPrivateKey(lp)
	if err != nil {
		return nil, fmt.Errorf("identity: peer ID: %w", err)
	}
	return &Identity{priv: priv, id: id, lp: lp}, nil
}

// PeerID is the device's libp2p peer ID.
func (i *Identity) PeerID() peer.ID { return i.id }

// PublicKey is the ed25519 public key.
func (i *Identity) PublicKey() ed25519.PublicKey { return i.priv.Public().(ed25519.PublicKey) }

// PrivateKey is the ed25519 private key, for packages that sign with the
// standard library types (envelope). Never log or copy it.
func (i *Identity) PrivateKey() ed25519.PrivateKey { return i.priv }

// Libp2pKey is the same key in libp2p's type, for the transport host.
func (i *Identity) Libp2pKey() crypto.PrivKey { return i.lp }

// Sign signs msg. Callers put their own domain-separation prefix in msg.
func (i *Identity) Sign(msg []byte) []byte { return ed25519.Sign(i.priv, msg) }

// ErrBadSignature means a signature did not verify.
var ErrBadSignature = errors.New("identity: bad signature")

// PublicKeyOf extracts the ed25519 public key embedded in a peer ID. Only
// ed25519 peer IDs (identity multihash) are accepted.
func PublicKeyOf(id peer.ID) (ed25519.PublicKey, error) {
	pk, err := id.ExtractPublicKey()
	if err != nil {
		return nil, fmt.Errorf("identity: public key of %s: %w", id, err)
	}
	if pk.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("identity: peer %s has a %s key, want ed25519", id, pk.Type())
	}
	raw, err := pk.Raw()
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("identity: public key of %s: malformed", id)
	}
	return ed25519.PublicKey(raw), nil
}

// Verify checks sig over msg by the key of peer id.
func Verify(id peer.ID, msg, sig []byte) error {
	pub, err := PublicKeyOf(id)
	if err != nil {
		return err
	}
	if !ed25519.Verify(pub, msg, sig) {
		return ErrBadSignature
	}
	return nil
}
