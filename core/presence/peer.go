package presence

import (
	"crypto/ed25519"
	"fmt"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// peerIDOf is the libp2p peer ID of an ed25519 identity key.
func peerIDOf(pub ed25519.PublicKey) (peer.ID, error) {
	k, err := crypto.UnmarshalEd25519PublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("presence: key: %w", err)
	}
	return peer.IDFromPublicKey(k)
}
