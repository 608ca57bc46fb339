package circle

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// EpochSecret is the circle secret for one epoch. It is used only for
// routing tags and sender hints (envelope.NewEpochKeys derives their keys
// from it) and board key names, never to encrypt content.
//
//	ikm    = root secret ‖ contribution of each applied remove op, in op-hash order
//	secret = HKDF-SHA256(ikm, salt = epoch, info = "remora/v1/epoch-secret")
//	names  = HKDF-SHA256(ikm, salt = circle ID, info = "remora/v1/board-names")
//
// The root secret is made by the creator and handed to each joiner; each
// remove op's author makes a fresh 32-byte contribution and hands it to the
// members that remain, so a removed member cannot compute later secrets.
//
// Board key names come from names, which has no epoch in it: an add leaves
// them as they were (a joiner gets the root and every contribution in its
// welcome, so it could compute the earlier names anyway), a removal changes
// them. With names salted by the epoch, every join gave the board a fresh
// set of presence slots: a circle formed by n joins left about n²/2 keys
// on the service for good (545 Matrix state keys after 33 joins), and a
// Matrix room's state, which the homeserver keeps and serves whole, grew
// with them.
type EpochSecret struct {
	Circle ID
	Epoch  Epoch
	secret [32]byte
	names  [32]byte
}

func deriveEpochSecret(circle ID, epoch Epoch, root [32]byte, contributions [][32]byte) EpochSecret {
	ikm := append([]byte(nil), root[:]...)
	for _, c := range contributions {
		ikm = append(ikm, c[:]...)
	}
	s := EpochSecret{Circle: circle, Epoch: epoch}
	copy(s.secret[:], hkdfKey(ikm, epoch[:], "remora/v1/epoch-secret"))
	copy(s.names[:], hkdfKey(ikm, circle[:], "remora/v1/board-names"))
	return s
}

func hkdfKey(ikm, salt []byte, info string) []byte {
	k, err := hkdf.Key(sha256.New, ikm, salt, info, 32)
	if err != nil {
		panic("circle: hkdf: " + err.Error()) // cannot happen for 32 bytes of SHA-256
	}
	return k
}

func (s EpochSecret) derive(label string) []byte {
	k, err := hkdf.Expand(sha256.New, s.secret[:], label, 32)
	if err != nil {
		panic("circle: hkdf: " + err.Error())
	}
	return k
}

// Bytes returns the 32-byte secret, for envelope.NewEpochKeys (which
// derives the tag and hint keys from it). Never log it.
func (s EpochSecret) Bytes() []byte { return append([]byte(nil), s.secret[:]...) }

// BoardKey names a board entry (e.g. "presence-slot/0") so that the service
// sees an opaque key: lowercase base32 of the first 20 bytes of
// HMAC-SHA256(names, name), prefixed "r". The same name gives the same key
// in every epoch until a removal.
func (s EpochSecret) BoardKey(name string) string {
	m := hmac.New(sha256.New, s.names[:])
	m.Write([]byte(name))
	sum := m.Sum(nil)[:20]
	return "r" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum))
}

// PresenceSlotWindow is how long a member keeps one presence board slot
// (about one publication at the default cadence).
const PresenceSlotWindow = 5 * time.Minute

// PresenceBoardKey names the board entry that member self writes its
// presence record to at time at, or false if self is not among members.
//
// A key per member ("presence/<peer ID>") would be the same on every
// publication of the epoch and link them all on the service. Instead the
// epoch has one slot per member, slot i named BoardKey("presence-slot/i"),
// and in each window of PresenceSlotWindow the members are dealt the slots
// by a permutation keyed with the epoch secret: each member ranks by
// HMAC(slot key, window ‖ peer ID), and its rank is its slot. Members that
// agree on the roster never share a slot in a window; from one window to
// the next a member's slot is drawn afresh, so an operator sees the same n
// keys written all epoch long and cannot tell whose record a key holds.
// Readers read the slot keys (PresenceSlotKeys) and open what opens
// (presence records say whose they are), never the rest of the board, which
// anyone with write access to the service may fill; a stale record is
// overwritten by the next member dealt its slot, and the board never holds
// more than one entry per member and epoch.
func (s EpochSecret) PresenceBoardKey(members []peer.ID, self peer.ID, at time.Time) (string, bool) {
	k := s.derive("remora/v1/presence-slot")
	var w [8]byte
	binary.BigEndian.PutUint64(w[:], uint64(at.Unix()/int64(PresenceSlotWindow/time.Second)))
	rank := func(p peer.ID) []byte {
		m := hmac.New(sha256.New, k)
		m.Write(w[:])
		m.Write([]byte(p))
		return m.Sum(nil)
	}
	mine, found, slot := rank(self), false, 0
	for _, p := range members {
		if p == self {
			found = true
			continue
		}
		if r := rank(p); bytes.Compare(r, mine) < 0 {
			slot++
		}
	}
	if !found {
		return "", false
	}
	return s.BoardKey(fmt.Sprintf("presence-slot/%d", slot)), true
}

// PresenceSlotKeys names the first n presence slots of the epoch, the
// board entries its members write their records to (PresenceBoardKey deals
// a roster of n members slots 0 to n-1). An add keeps the names: the
// newcomer's circle of n+1 writes slots 0 to n, n of them the same keys.
func (s EpochSecret) PresenceSlotKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = s.BoardKey(fmt.Sprintf("presence-slot/%d", i))
	}
	return keys
}

// LANKey is the key members seal their mDNS announcements under
// (core/lan): only members can read them.
func (s EpochSecret) LANKey() (k [32]byte) {
	copy(k[:], s.derive("remora/v1/lan"))
	return k
}

// String never reveals the secret.
func (s EpochSecret) String() string { return fmt.Sprintf("EpochSecret(%s/%s)", s.Circle, s.Epoch) }
