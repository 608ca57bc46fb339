package circle

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/remora-p2p/remora/core/identity"
)

// OpKind is the kind of a roster operation.
type OpKind uint8

// Roster operation kinds.
const (
	OpCreate        OpKind = 1 // genesis: circle ID, name, settings, the creator as first admin
	OpAdd           OpKind = 2 // add (or update) a member
	OpRemove        OpKind = 3 // remove a member
	OpRole          OpKind = 4 // change a member's role
	OpChannelSet    OpKind = 5 // add or replace a channel description
	OpChannelRemove OpKind = 6 // remove a channel
	OpSettings      OpKind = 7 // rename the circle, change the history setting
	OpPrekey        OpKind = 8 // a member publishes its rotated box prekey (signed by itself)
)

func (k OpKind) String() string {
	switch k {
	case OpCreate:
		return "create"
	case OpAdd:
		return "add"
	case OpRemove:
		return "remove"
	case OpRole:
		return "role"
	case OpChannelSet:
		return "channel-set"
	case OpChannelRemove:
		return "channel-remove"
	case OpSettings:
		return "settings"
	case OpPrekey:
		return "prekey"
	}
	return fmt.Sprintf("op(%d)", uint8(k))
}

// Limits on roster operations.
const (
	MaxOpSize      = 4096
	MaxParents     = 16
	MaxNameLen     = 64
	MaxChannelText = 512
)

const (
	opVersion = 1
	opDomain  = "remora/v1/roster-op"
)

// ErrMalformedOp means roster operation bytes could not be decoded or verified.
var ErrMalformedOp = errors.New("circle: malformed roster operation")

// Op is one signed roster operation.
type Op struct {
	Circle  ID
	Parents []Hash // heads of the log the author saw; empty only for OpCreate
	Kind    OpKind
	Author  peer.ID
	Time    time.Time // author's clock; informational, never used for ordering

	Target     peer.ID         // add, remove, role (OpCreate, OpPrekey: the author)
	Prekey     identity.Prekey // add, create, prekey
	Name       string          // add, create: display name
	Role       Role            // add, role
	Channel    Channel         // channel-set; channel-remove uses Channel.ID
	CircleName string          // create, settings: circle name
	History    bool            // create, settings: new members read history from before they joined

	raw  []byte
	hash Hash
}

// Raw returns the operation's wire bytes.
func (o *Op) Raw() []byte { return o.raw }

// Hash returns SHA-256 of the wire bytes.
func (o *Op) Hash() Hash { return o.hash }

func field(b []byte, num uint64, v []byte) []byte {
	b = binary.AppendUvarint(b, num)
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func uv(x uint64) []byte { return binary.AppendUvarint(nil, x) }

// field numbers
const (
	fCircle   = 1
	fParent   = 2
	fKind     = 3
	fAuthor   = 4
	fTime     = 5
	fTarget   = 6
	fPrekey   = 7
	fName     = 8
	fRole     = 9
	fChanID   = 10
	fChanKind = 11
	fChanAddr = 12
	fCircName = 13
	fHistory  = 14
)

func (o *Op) body() []byte {
	var b []byte
	b = field(b, fCircle, o.Circle[:])
	for _, p := range o.Parents {
		b = field(b, fParent, p[:])
	}
	b = field(b, fKind, uv(uint64(o.Kind)))
	b = field(b, fAuthor, []byte(o.Author))
	b = field(b, fTime, uv(uint64(max(o.Time.UnixMilli(), 0))))
	if o.Target != "" {
		b = field(b, fTarget, []byte(o.Target))
	}
	if o.Prekey.Public != nil {
		b = field(b, fPrekey, o.Prekey.Marshal())
	}
	if o.Name != "" {
		b = field(b, fName, []byte(o.Name))
	}
	if o.Role != 0 {
		b = field(b, fRole, uv(uint64(o.Role)))
	}
	if o.Channel.ID != "" {
		b = field(b, fChanID, []byte(o.Channel.ID))
	}
	if o.Channel.Kind != "" {
		b = field(b, fChanKind, []byte(o.Channel.Kind))
	}
	if o.Channel.Address != "" {
		b = field(b, fChanAddr, []byte(o.Channel.Address))
	}
	if o.CircleName != "" {
		b = field(b, fCircName, []byte(o.CircleName))
	}
	if o.Kind == OpCreate || o.Kind == OpSettings {
		h := uint64(0)
		if o.History {
			h = 1
		}
		b = field(b, fHistory, uv(h))
	}
	return b
}

func opSigned(wire []byte) []byte {
	m := make([]byte, 0, len(opDomain)+len(wire))
	m = append(m, opDomain...)
	return append(m, wire...)
}

// sign fills Author, encodes and signs o.
func (o *Op) sign(id *identity.Identity) error {
	o.Author = id.PeerID()
	o.Time = o.Time.Truncate(time.Millisecond)
	if err := o.check(); err != nil {
		return err
	}
	wire := append([]byte{opVersion}, o.body()...)
	if len(wire)+64 > MaxOpSize {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrMalformedOp, len(wire)+64, MaxOpSize)
	}
	sig := id.Sign(opSigned(wire))
	o.raw = append(wire, sig...)
	o.hash = sha256.Sum256(o.raw)
	return nil
}

// ParseOp decodes a roster operation and verifies its signature by its
// author over the bytes as received. It does not check authorization: that
// depends on the log (see [Log]).
func ParseOp(raw []byte) (*Op, error) {
	if len(raw) > MaxOpSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMalformedOp, len(raw), MaxOpSize)
	}
	if len(raw) < 1+64 || raw[0] != opVersion {
		return nil, fmt.Errorf("%w: too short or unknown version", ErrMalformedOp)
	}
	wire, sig := raw[:len(raw)-64], raw[len(raw)-64:]
	o := &Op{}
	if err := o.decode(wire[1:]); err != nil {
		return nil, err
	}
	if err := o.check(); err != nil {
		return nil, err
	}
	// Canonical encoding only: one byte string per operation, so its hash
	// names it uniquely.
	if !bytes.Equal(o.body(), wire[1:]) {
		return nil, fmt.Errorf("%w: non-canonical encoding", ErrMalformedOp)
	}
	if err := identity.Verify(o.Author, opSigned(wire), sig); err != nil {
		return nil, fmt.Errorf("%w: signature by %s: %v", ErrMalformedOp, o.Author, err)
	}
	o.raw = bytes.Clone(raw)
	o.hash = sha256.Sum256(o.raw)
	return o, nil
}

func (o *Op) decode(b []byte) error {
	last := uint64(0)
	seen := map[uint64]bool{}
	for len(b) > 0 {
		num, n := binary.Uvarint(b)
		if n <= 0 {
			return fmt.Errorf("%w: bad field number", ErrMalformedOp)
		}
		b = b[n:]
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return fmt.Errorf("%w: bad field length", ErrMalformedOp)
		}
		v := b[n : n+int(l)]
		b = b[n+int(l):]
		if num < last || (num == last && num != fParent) {
			return fmt.Errorf("%w: field %d out of order or repeated", ErrMalformedOp, num)
		}
		last = num
		seen[num] = true
		var err error
		switch num {
		case fCircle:
			if len(v) != len(o.Circle) {
				return fmt.Errorf("%w: circle ID length %d", ErrMalformedOp, len(v))
			}
			copy(o.Circle[:], v)
		case fParent:
			if len(v) != 32 || len(o.Parents) >= MaxParents {
				return fmt.Errorf("%w: bad parent or more than %d", ErrMalformedOp, MaxParents)
			}
			var h Hash
			copy(h[:], v)
			o.Parents = append(o.Parents, h)
		case fKind:
			var k uint64
			k, err = uvarint(v)
			o.Kind = OpKind(k)
		case fAuthor:
			o.Author, err = peer.IDFromBytes(v)
		case fTime:
			var ms uint64
			ms, err = uvarint(v)
			if ms > 1<<53 {
				err = errors.New("time out of range")
			}
			o.Time = time.UnixMilli(int64(ms)).UTC()
		case fTarget:
			o.Target, err = peer.IDFromBytes(v)
		case fPrekey:
			o.Prekey, err = identity.ParsePrekey(v)
		case fName:
			o.Name, err = text(v, MaxNameLen)
		case fRole:
			var r uint64
			r, err = uvarint(v)
			o.Role = Role(r)
		case fChanID:
			o.Channel.ID, err = text(v, MaxChannelText)
		case fChanKind:
			o.Channel.Kind, err = text(v, MaxChannelText)
		case fChanAddr:
			o.Channel.Address, err = text(v, MaxChannelText)
		case fCircName:
			o.CircleName, err = text(v, MaxNameLen)
		case fHistory:
			var h uint64
			h, err = uvarint(v)
			if h > 1 {
				err = errors.New("history flag not 0 or 1")
			}
			o.History = h == 1
		default:
			// Unknown fields are rejected: every member must compute the same
			// roster, so a field this version cannot interpret is not ignored.
			return fmt.Errorf("%w: unknown field %d (from a newer remora?)", ErrMalformedOp, num)
		}
		if err != nil {
			return fmt.Errorf("%w: field %d: %v", ErrMalformedOp, num, err)
		}
	}
	for _, f := range []uint64{fCircle, fKind, fAuthor, fTime} {
		if !seen[f] {
			return fmt.Errorf("%w: missing field %d", ErrMalformedOp, f)
		}
	}
	return nil
}

func uvarint(v []byte) (uint64, error) {
	x, n := binary.Uvarint(v)
	if n <= 0 || n != len(v) {
		return 0, errors.New("bad varint")
	}
	return x, nil
}

func text(v []byte, limit int) (string, error) {
	if len(v) == 0 || len(v) > limit || !utf8.Valid(v) {
		return "", fmt.Errorf("text empty, longer than %d bytes or not UTF-8", limit)
	}
	return string(v), nil
}

// check validates the fields each kind needs.
func (o *Op) check() error {
	bad := func(why string) error { return fmt.Errorf("%w: %s op: %s", ErrMalformedOp, o.Kind, why) }
	if (o.Kind == OpCreate) != (len(o.Parents) == 0) {
		return bad("only a create op has no parents")
	}
	if len(o.Parents) > MaxParents {
		return bad("too many parents")
	}
	for i := 1; i < len(o.Parents); i++ {
		if bytes.Compare(o.Parents[i-1][:], o.Parents[i][:]) >= 0 {
			return bad("parents not sorted or repeated")
		}
	}
	if len(o.Name) > MaxNameLen || len(o.CircleName) > MaxNameLen || len(o.Channel.ID) > MaxChannelText ||
		len(o.Channel.Kind) > MaxChannelText || len(o.Channel.Address) > MaxChannelText {
		return bad("text too long")
	}
	has := func(target, prekey, name, role, channel, circle bool) error {
		if (o.Target != "") != target || (o.Prekey.Public != nil) != prekey || (o.Name != "") != name ||
			(o.Role != 0) != role || (o.Channel != Channel{}) != channel || (o.CircleName != "") != circle {
			return bad("wrong set of fields")
		}
		return nil
	}
	var err error
	switch o.Kind {
	case OpCreate:
		err = has(true, true, true, false, false, true)
		if err == nil && o.Target != o.Author {
			err = bad("creator must be the author")
		}
	case OpAdd:
		err = has(true, true, true, true, false, false)
	case OpRemove:
		err = has(true, false, false, false, false, false)
	case OpRole:
		err = has(true, false, false, true, false, false)
	case OpChannelSet:
		err = has(false, false, false, false, true, false)
		if err == nil && (o.Channel.ID == "" || o.Channel.Kind == "") {
			err = bad("channel needs an ID and a kind")
		}
	case OpChannelRemove:
		err = has(false, false, false, false, true, false)
		if err == nil && (o.Channel.Kind != "" || o.Channel.Address != "") {
			err = bad("channel remove carries only the channel ID")
		}
	case OpSettings:
		err = has(false, false, false, false, false, o.CircleName != "")
	case OpPrekey:
		err = has(true, true, false, false, false, false)
		if err == nil && o.Target != o.Author {
			err = bad("a member publishes only its own prekey")
		}
	default:
		return fmt.Errorf("%w: unknown kind %d", ErrMalformedOp, o.Kind)
	}
	if err != nil {
		return err
	}
	if o.Role != 0 && o.Role != RoleMember && o.Role != RoleAdmin {
		return bad("unknown role")
	}
	if o.Prekey.Public != nil {
		if err := o.Prekey.Verify(o.Target); err != nil {
			return bad("prekey not signed by the member: " + err.Error())
		}
	}
	return nil
}
