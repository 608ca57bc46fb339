package presence

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// Version is the record format version.
const Version = 1

// MaxSize bounds a signed record; larger input is rejected before parsing.
const MaxSize = 8 << 10

// maxAddrs bounds how many addresses one record may carry.
const maxAddrs = 32

var domain = []byte("remora/v1/presence")

// Kind says where an address came from.
type Kind uint8

const (
	KindLAN      Kind = 1 // a local interface address: never published to a channel
	KindObserved Kind = 2 // seen by other peers (identify/AutoNAT)
	KindMapped   Kind = 3 // a port mapping (UPnP/NAT-PMP)
	KindRelay    Kind = 4 // a circuit address through a relay
	KindPublic   Kind = 5 // a listen address on a public interface
)

func (k Kind) String() string {
	switch k {
	case KindLAN:
		return "lan"
	case KindObserved:
		return "observed"
	case KindMapped:
		return "mapped"
	case KindRelay:
		return "relay"
	case KindPublic:
		return "public"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// NATHint is what the peer knows of its NAT; it sends hopeless pairs
// (symmetric on either side) straight to a relay.
type NATHint uint8

const (
	NATUnknown   NATHint = 0
	NATNone      NATHint = 1 // publicly reachable
	NATCone      NATHint = 2 // endpoint-independent mapping: punchable
	NATSymmetric NATHint = 3 // endpoint-dependent mapping: relay
)

func (n NATHint) String() string {
	switch n {
	case NATNone:
		return "public"
	case NATCone:
		return "cone"
	case NATSymmetric:
		return "symmetric"
	}
	return "unknown"
}

// Address is one way to reach the peer.
type Address struct {
	Addr       ma.Multiaddr
	Kind       Kind
	Observers  int       // distinct peers that observed it (KindObserved)
	ObservedAt time.Time // when it was last seen or checked
}

// Record says where a peer is reachable until Expiry.
type Record struct {
	Peer       peer.ID
	Seq        uint64
	IssuedAt   time.Time
	Expiry     time.Time
	Addrs      []Address
	NAT        NATHint
	RelayOffer bool
	BoxKey     []byte
	LANHash    []byte
}

// Errors returned by Open.
var (
	ErrMalformed = errors.New("presence: malformed record")
	ErrSignature = errors.New("presence: bad signature")
	ErrExpired   = errors.New("presence: record expired")
	ErrWrongPeer = errors.New("presence: record is not signed by the peer it names")
)

// ForChannel returns a copy without LAN addresses, for publishing to a
// channel (a service operator must never learn home network addresses).
// Loopback addresses are kept: they say nothing about anyone's network and
// let nodes on one host (several users, tests, the demo) find each other.
// relayOnly keeps relay addresses only, hiding the peer's own IPs.
func (r *Record) ForChannel(relayOnly bool) *Record {
	c := *r
	c.Addrs = nil
	for _, a := range r.Addrs {
		if relayOnly && a.Kind != KindRelay {
			continue
		}
		if a.Kind == KindLAN && !manet.IsIPLoopback(a.Addr) {
			continue
		}
		c.Addrs = append(c.Addrs, a)
	}
	return &c
}

// Newer reports whether r supersedes old: the highest sequence wins.
func (r *Record) Newer(old *Record) bool { return old == nil || r.Seq > old.Seq }

// Sign encodes r and signs it with the peer's identity key. The key must be
// the one r.Peer is derived from.
func Sign(r *Record, key ed25519.PrivateKey) ([]byte, error) {
	if err := checkPeer(r.Peer, key.Public().(ed25519.PublicKey)); err != nil {
		return nil, err
	}
	if len(r.Addrs) > maxAddrs {
		return nil, fmt.Errorf("presence: sign: %d addresses, at most %d", len(r.Addrs), maxAddrs)
	}
	var b []byte
	b = append(b, Version)
	b = field(b, 1, []byte(r.Peer))
	b = field(b, 2, binary.AppendUvarint(nil, r.Seq))
	b = field(b, 3, binary.AppendUvarint(nil, uint64(r.IssuedAt.UnixMilli())))
	b = field(b, 4, binary.AppendUvarint(nil, uint64(r.Expiry.UnixMilli())))
	for _, a := range r.Addrs {
		if a.Addr == nil {
			return nil, fmt.Errorf("presence: sign: nil address")
		}
		var v []byte
		v = binary.AppendUvarint(v, uint64(a.Kind))
		v = binary.AppendUvarint(v, uint64(max(a.Observers, 0)))
		v = binary.AppendUvarint(v, uint64(max(a.ObservedAt.UnixMilli(), 0)))
		v = append(v, a.Addr.Bytes()...)
		b = field(b, 5, v)
	}
	b = field(b, 6, binary.AppendUvarint(nil, uint64(r.NAT)))
	relay := uint64(0)
	if r.RelayOffer {
		relay = 1
	}
	b = field(b, 7, binary.AppendUvarint(nil, relay))
	if len(r.BoxKey) > 0 {
		b = field(b, 8, r.BoxKey)
	}
	if len(r.LANHash) > 0 {
		b = field(b, 9, r.LANHash)
	}
	sig := ed25519.Sign(key, signedBytes(b))
	if len(b)+len(sig) > MaxSize {
		return nil, fmt.Errorf("presence: sign: record of %d bytes exceeds %d", len(b)+len(sig), MaxSize)
	}
	return append(b, sig...), nil
}

// Open verifies a signed record against the public key of the peer it names
// and parses it. now is used to reject expired records.
func Open(raw []byte, now time.Time) (*Record, error) {
	if len(raw) < 1+ed25519.SignatureSize || len(raw) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformed, len(raw))
	}
	if raw[0] != Version {
		return nil, fmt.Errorf("%w: version %d", ErrMalformed, raw[0])
	}
	body := raw[:len(raw)-ed25519.SignatureSize]
	sig := raw[len(raw)-ed25519.SignatureSize:]
	// The key is named inside the body, so the peer ID field is read first,
	// the signature checked, and only then is the rest parsed.
	pid, err := peerField(body[1:])
	if err != nil {
		return nil, err
	}
	pub, err := pid.ExtractPublicKey()
	if err != nil {
		return nil, fmt.Errorf("%w: peer ID carries no key: %v", ErrMalformed, err)
	}
	rawPub, err := pub.Raw()
	if err != nil || len(rawPub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: peer ID is not an ed25519 key", ErrMalformed)
	}
	if !ed25519.Verify(ed25519.PublicKey(rawPub), signedBytes(body), sig) {
		return nil, ErrSignature
	}
	r, err := parse(body[1:])
	if err != nil {
		return nil, err
	}
	if !r.Expiry.After(now) {
		return nil, fmt.Errorf("%w at %s", ErrExpired, r.Expiry.UTC().Format(time.RFC3339))
	}
	return r, nil
}

// Peek reads the peer ID and sequence number a record claims without
// checking its signature. It is for one decision only: skipping a record
// that could not be newer than the one already held from that peer (peer
// exchange relays every record a member holds, and checking each signature
// again, presence.Open, took 9-14 % of the CPU of the scale benchmark's 33
// to 40 nodes in one process). Nothing Peek returns may be trusted for anything else.
func Peek(raw []byte) (peer.ID, uint64, error) {
	if len(raw) < 1+ed25519.SignatureSize || len(raw) > MaxSize || raw[0] != Version {
		return "", 0, fmt.Errorf("%w: not a record", ErrMalformed)
	}
	body := raw[1 : len(raw)-ed25519.SignatureSize]
	id, err := peerField(body)
	if err != nil {
		return "", 0, err
	}
	_, _, rest, _ := next(body) // peerField read it
	num, v, _, err := next(rest)
	if err != nil {
		return "", 0, err
	}
	if num != 2 {
		return "", 0, fmt.Errorf("%w: sequence must come second", ErrMalformed)
	}
	seq, err := uvarint(v)
	if err != nil {
		return "", 0, err
	}
	return id, seq, nil
}

func signedBytes(body []byte) []byte {
	return slices.Concat(domain, body)
}

func checkPeer(id peer.ID, pub ed25519.PublicKey) error {
	want, err := peerIDOf(pub)
	if err != nil {
		return err
	}
	if id != want {
		return ErrWrongPeer
	}
	return nil
}

func field(b []byte, num uint64, v []byte) []byte {
	b = binary.AppendUvarint(b, num)
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// next reads one field; it returns the rest.
func next(b []byte) (num uint64, v, rest []byte, err error) {
	num, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, nil, nil, fmt.Errorf("%w: bad field number", ErrMalformed)
	}
	b = b[n:]
	l, n := binary.Uvarint(b)
	if n <= 0 || l > uint64(len(b)-n) {
		return 0, nil, nil, fmt.Errorf("%w: bad field length", ErrMalformed)
	}
	b = b[n:]
	return num, b[:l], b[l:], nil
}

func peerField(b []byte) (peer.ID, error) {
	num, v, _, err := next(b)
	if err != nil {
		return "", err
	}
	if num != 1 {
		return "", fmt.Errorf("%w: peer ID must come first", ErrMalformed)
	}
	id, err := peer.IDFromBytes(v)
	if err != nil {
		return "", fmt.Errorf("%w: peer ID: %v", ErrMalformed, err)
	}
	return id, nil
}

func uvarint(v []byte) (uint64, error) {
	x, n := binary.Uvarint(v)
	if n <= 0 || n != len(v) {
		return 0, fmt.Errorf("%w: bad integer", ErrMalformed)
	}
	return x, nil
}

func millis(v []byte) (time.Time, error) {
	x, err := uvarint(v)
	if err != nil {
		return time.Time{}, err
	}
	if x > 1<<53 {
		return time.Time{}, fmt.Errorf("%w: time out of range", ErrMalformed)
	}
	return time.UnixMilli(int64(x)), nil
}

func parse(b []byte) (*Record, error) {
	r := &Record{}
	last := uint64(0)
	for len(b) > 0 {
		num, v, rest, err := next(b)
		if err != nil {
			return nil, err
		}
		b = rest
		if num < last || (num == last && num != 5) {
			return nil, fmt.Errorf("%w: field %d out of order", ErrMalformed, num)
		}
		last = num
		switch num {
		case 1:
			id, err := peer.IDFromBytes(v)
			if err != nil {
				return nil, fmt.Errorf("%w: peer ID: %v", ErrMalformed, err)
			}
			r.Peer = id
		case 2:
			if r.Seq, err = uvarint(v); err != nil {
				return nil, err
			}
		case 3:
			if r.IssuedAt, err = millis(v); err != nil {
				return nil, err
			}
		case 4:
			if r.Expiry, err = millis(v); err != nil {
				return nil, err
			}
		case 5:
			if len(r.Addrs) == maxAddrs {
				return nil, fmt.Errorf("%w: more than %d addresses", ErrMalformed, maxAddrs)
			}
			a, err := parseAddr(v)
			if err != nil {
				return nil, err
			}
			r.Addrs = append(r.Addrs, a)
		case 6:
			x, err := uvarint(v)
			if err != nil || x > uint64(NATSymmetric) {
				return nil, fmt.Errorf("%w: NAT hint", ErrMalformed)
			}
			r.NAT = NATHint(x)
		case 7:
			x, err := uvarint(v)
			if err != nil || x > 1 {
				return nil, fmt.Errorf("%w: relay offer", ErrMalformed)
			}
			r.RelayOffer = x == 1
		case 8:
			r.BoxKey = bytes.Clone(v)
		case 9:
			r.LANHash = bytes.Clone(v)
		default:
			// Unknown fields from a later version are skipped.
		}
	}
	if r.Peer == "" || r.Expiry.IsZero() {
		return nil, fmt.Errorf("%w: missing peer or expiry", ErrMalformed)
	}
	return r, nil
}

func parseAddr(v []byte) (Address, error) {
	var a Address
	kind, n := binary.Uvarint(v)
	if n <= 0 || kind == 0 || kind > uint64(KindPublic) {
		return a, fmt.Errorf("%w: address kind", ErrMalformed)
	}
	v = v[n:]
	obs, n := binary.Uvarint(v)
	if n <= 0 || obs > 1<<16 {
		return a, fmt.Errorf("%w: address observers", ErrMalformed)
	}
	v = v[n:]
	at, n := binary.Uvarint(v)
	if n <= 0 || at > 1<<53 {
		return a, fmt.Errorf("%w: address time", ErrMalformed)
	}
	v = v[n:]
	m, err := ma.NewMultiaddrBytes(v)
	if err != nil {
		return a, fmt.Errorf("%w: multiaddr: %v", ErrMalformed, err)
	}
	return Address{Addr: m, Kind: Kind(kind), Observers: int(obs), ObservedAt: time.UnixMilli(int64(at))}, nil
}
