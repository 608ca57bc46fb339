package circle

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"
)

// KeyMsgKind is the kind of a key-management message.
type KeyMsgKind uint8

// Key-management message kinds. The node carries each in a direct envelope
// (sealed to one member, signed by the sender), or a sender key after an
// add-only change in one broadcast envelope under the epoch before
// ([Outgoing].Broadcast), so these messages carry no signature of their
// own: the envelope's sender is the authority.
const (
	// MsgSenderKey hands out the sender's chain key for an epoch.
	MsgSenderKey KeyMsgKind = 1
	// MsgContribution hands out the secret contribution of a remove op.
	MsgContribution KeyMsgKind = 2
	// MsgKeyRequest asks the recipient to resend its chain key for an epoch
	// (Epoch set) or a remove op's contribution (Op set).
	MsgKeyRequest KeyMsgKind = 3
	// MsgOpRequest asks the recipient for roster operations (Want) and
	// those of their ancestors the asker lacks; Have are the asker's heads.
	// It is what a member sends when an operation arrives before its
	// parents.
	MsgOpRequest KeyMsgKind = 4
)

// KeyMsg is a key hand-out or request.
type KeyMsg struct {
	Kind   KeyMsgKind
	Circle ID
	Epoch  Epoch    // sender key, request for a sender key
	Day    uint32   // sender key: the day Key belongs to (days since 1970-01-01 UTC)
	Key    [32]byte // sender key: chain key for Day; contribution: the secret
	Op     Hash     // contribution, request for a contribution
	Want   []Hash   // op request: the operations wanted (1 to MaxParents)
	Have   []Hash   // op request: the asker's heads (at most MaxParents)
}

const keyMsgVersion = 1

// ErrMalformedKeyMsg means a key message could not be decoded.
var ErrMalformedKeyMsg = errors.New("circle: malformed key message")

// Marshal encodes m: version ‖ kind ‖ circle (16) ‖ then per kind
// sender key: epoch (32) ‖ day (4, big endian) ‖ key (32);
// contribution: op (32) ‖ key (32); request: 0x01 ‖ epoch (32) or 0x02 ‖ op (32);
// op request: count ‖ wanted ops (32 each) ‖ count ‖ heads (32 each), counts
// one byte each.
func (m KeyMsg) Marshal() []byte {
	b := []byte{keyMsgVersion, byte(m.Kind)}
	b = append(b, m.Circle[:]...)
	switch m.Kind {
	case MsgSenderKey:
		b = append(b, m.Epoch[:]...)
		b = binary.BigEndian.AppendUint32(b, m.Day)
		b = append(b, m.Key[:]...)
	case MsgContribution:
		b = append(b, m.Op[:]...)
		b = append(b, m.Key[:]...)
	case MsgKeyRequest:
		if m.Op != (Hash{}) {
			b = append(b, 2)
			b = append(b, m.Op[:]...)
		} else {
			b = append(b, 1)
			b = append(b, m.Epoch[:]...)
		}
	case MsgOpRequest:
		for _, hs := range [][]Hash{m.Want, m.Have} {
			b = append(b, byte(len(hs)))
			for _, h := range hs {
				b = append(b, h[:]...)
			}
		}
	}
	return b
}

// ParseKeyMsg decodes a key message.
func ParseKeyMsg(b []byte) (KeyMsg, error) {
	var m KeyMsg
	if len(b) < 18 || b[0] != keyMsgVersion {
		return m, fmt.Errorf("%w: too short or unknown version", ErrMalformedKeyMsg)
	}
	m.Kind = KeyMsgKind(b[1])
	copy(m.Circle[:], b[2:18])
	rest := b[18:]
	switch m.Kind {
	case MsgSenderKey:
		if len(rest) != 32+4+32 {
			return m, fmt.Errorf("%w: sender key length %d", ErrMalformedKeyMsg, len(rest))
		}
		copy(m.Epoch[:], rest)
		m.Day = binary.BigEndian.Uint32(rest[32:])
		copy(m.Key[:], rest[36:])
	case MsgContribution:
		if len(rest) != 64 {
			return m, fmt.Errorf("%w: contribution length %d", ErrMalformedKeyMsg, len(rest))
		}
		copy(m.Op[:], rest)
		copy(m.Key[:], rest[32:])
	case MsgKeyRequest:
		if len(rest) != 33 || (rest[0] != 1 && rest[0] != 2) {
			return m, fmt.Errorf("%w: request", ErrMalformedKeyMsg)
		}
		if rest[0] == 1 {
			copy(m.Epoch[:], rest[1:])
		} else {
			copy(m.Op[:], rest[1:])
			if m.Op == (Hash{}) {
				return m, fmt.Errorf("%w: request for the zero op", ErrMalformedKeyMsg)
			}
		}
	case MsgOpRequest:
		for k, dst := range []*[]Hash{&m.Want, &m.Have} {
			if len(rest) < 1 || int(rest[0]) > MaxParents || k == 0 && rest[0] == 0 || len(rest) < 1+32*int(rest[0]) {
				return m, fmt.Errorf("%w: op request", ErrMalformedKeyMsg)
			}
			for i := range int(rest[0]) {
				*dst = append(*dst, Hash(rest[1+32*i:]))
			}
			rest = rest[1+32*int(rest[0]):]
		}
		if len(rest) != 0 {
			return m, fmt.Errorf("%w: op request length", ErrMalformedKeyMsg)
		}
	default:
		return m, fmt.Errorf("%w: unknown kind %d", ErrMalformedKeyMsg, m.Kind)
	}
	return m, nil
}

// Outgoing is a key message, or a roster operation, the node must seal in a
// direct envelope to To (or, for Broadcast, in one broadcast envelope).
type Outgoing struct {
	To  peer.ID
	Msg KeyMsg
	// Roster, when set, is a roster operation to send (envelope kind
	// roster) instead of Msg: an answer to an op request, or an op
	// forwarded to a member its author did not know of.
	Roster []byte
	// Epoch is the epoch to seal under; the zero Epoch means the current
	// one. After a membership change the recipient may not be able to open
	// the new epoch yet (it lacks the op or a contribution), so key
	// messages go under the previous epoch while it is within the grace
	// window. Find its keys in Circle.Epochs().
	Epoch Epoch
	// Broadcast, when set (To empty), makes Msg a sender-key hand-out for
	// these members of Epoch, all the others of that epoch: seal it once,
	// as a broadcast envelope under Epoch with the key
	// [Circle.HandOutKey] gives for it. Each of them holds this device's
	// chain of Epoch, and nobody else does (see HandOutKey), so one
	// envelope serves them all after an add-only change.
	Broadcast []peer.ID
}
