package circle

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/remora-p2p/remora/core/identity"
)

// ID is a circle's random 128-bit identifier.
type ID [16]byte

func (id ID) String() string { return hex.EncodeToString(id[:]) }

// ParseID parses the hex form of an ID.
func ParseID(s string) (ID, error) {
	var id ID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("circle: %q is not a circle ID (32 hex digits)", s)
	}
	copy(id[:], b)
	return id, nil
}

// NewID returns a random circle ID from r (crypto/rand when nil).
func NewID(r io.Reader) (ID, error) {
	if r == nil {
		r = rand.Reader
	}
	var id ID
	if _, err := io.ReadFull(r, id[:]); err != nil {
		return id, fmt.Errorf("circle: new ID: %w", err)
	}
	return id, nil
}

// Hash names a roster operation: SHA-256 of its wire bytes.
type Hash [32]byte

func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// Epoch names a roster membership state: see [Roster.Epoch].
type Epoch [32]byte

func (e Epoch) String() string { return hex.EncodeToString(e[:]) }

// Role is a member's role in the roster.
type Role uint8

// Roles. Only admins sign roster operations (except a member removing itself).
const (
	RoleMember Role = 1
	RoleAdmin  Role = 2
)

func (r Role) String() string {
	switch r {
	case RoleMember:
		return "member"
	case RoleAdmin:
		return "admin"
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

// Member is one device in the roster.
type Member struct {
	Peer   peer.ID
	Prekey identity.Prekey // signed box prekey at the time of the add
	Name   string          // display name
	Role   Role
	Since  Hash // the add operation that made it a member
}

// Channel describes one channel of a circle: where envelopes are carried.
// It never holds credentials; each member configures its own account.
type Channel struct {
	ID      string // stable channel ID, also hashed into routing tags
	Kind    string // adapter kind: "matrix", "imap", "git", "mastodon", "dir", …
	Address string // room ID, list address, repo URL, … (no secrets)
}

func unhex(dst []byte, s string) error {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(dst) {
		return fmt.Errorf("circle: %q is not %d hex bytes", s, len(dst))
	}
	copy(dst, b)
	return nil
}

// MarshalText encodes the hash as hex.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText decodes a hex hash.
func (h *Hash) UnmarshalText(b []byte) error { return unhex(h[:], string(b)) }

// MarshalText encodes the epoch as hex.
func (e Epoch) MarshalText() ([]byte, error) { return []byte(e.String()), nil }

// UnmarshalText decodes a hex epoch.
func (e *Epoch) UnmarshalText(b []byte) error { return unhex(e[:], string(b)) }
