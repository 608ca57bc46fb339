package transport

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// ProtocolID is the libp2p protocol of acknowledged messages.
const ProtocolID = "/remora/msg/1"

// Defaults.
const (
	// DefaultMaxMessageSize bounds one message on /remora/msg/1.
	DefaultMaxMessageSize = 4 << 20
	// IdleStreamTimeout is how long a receiver keeps an idle message stream.
	IdleStreamTimeout = 2 * time.Minute
)

// Errors. Match with errors.Is.
var (
	// ErrClosed: the transport was closed.
	ErrClosed = errors.New("transport closed")
	// ErrTooLarge: the message exceeds the local or the remote size limit.
	ErrTooLarge = errors.New("message too large")
	// ErrRejected: the remote handler returned an error (a NACK). The error
	// is a *RemoteError carrying the remote's reason.
	ErrRejected = errors.New("message rejected by the remote handler")
	// ErrNotAllowed: the peer is not admitted by Options.Allow.
	ErrNotAllowed = errors.New("peer not allowed")
	// ErrNoAddrs: no address is known for the peer; add some with AddAddrs.
	ErrNoAddrs = errors.New("no known address for peer")

	errProtocol = errors.New("protocol violation")
)

// RemoteError is the NACK a remote handler returned.
type RemoteError struct{ Reason string }

func (e *RemoteError) Error() string { return fmt.Sprintf("%v: %s", ErrRejected, e.Reason) }

// Is makes errors.Is(err, ErrRejected) true.
func (e *RemoteError) Is(target error) bool { return target == ErrRejected }

// AddrKind says where one of our addresses comes from, and so where it may be
// published: AddrLAN never goes to a channel (DESIGN.md "Rendezvous").
type AddrKind string

// Address kinds.
const (
	AddrLAN      AddrKind = "lan"      // private, loopback, link-local or otherwise non-public IP
	AddrPublic   AddrKind = "public"   // a public IP bound on a local interface
	AddrObserved AddrKind = "observed" // our address as peers saw it (identify)
	AddrMapped   AddrKind = "mapped"   // a public address from a UPnP/NAT-PMP port mapping
	AddrRelay    AddrKind = "relay"    // a /p2p-circuit address through a relay reservation
)

// Addr is one address of this transport.
type Addr struct {
	Multiaddr  ma.Multiaddr
	Kind       AddrKind
	Observers  int       // distinct peers that reported it (AddrObserved only)
	ObservedAt time.Time // last report (AddrObserved only)
}

func (a Addr) String() string { return string(a.Kind) + " " + a.Multiaddr.String() }

// Path is the kind of live path to a peer, best first: lan > punched ≈ direct > relayed.
type Path string

// Paths.
const (
	PathNone    Path = "none"
	PathLAN     Path = "lan"     // a direct connection to a non-public address
	PathDirect  Path = "direct"  // a direct connection to a public address
	PathPunched Path = "punched" // a direct connection made by hole punching
	PathRelayed Path = "relayed" // only limited connections through a relay
)

// Live reports whether p is a live path.
func (p Path) Live() bool { return p != "" && p != PathNone }

// IsDirect reports whether p is a direct (not relayed) connection.
func (p Path) IsDirect() bool { return p == PathLAN || p == PathDirect || p == PathPunched }

// Reachability is AutoNAT's verdict on whether peers can dial us.
type Reachability string

// Reachability values.
const (
	ReachabilityUnknown Reachability = "unknown"
	ReachabilityPublic  Reachability = "public"
	ReachabilityPrivate Reachability = "private"
)

// NATType is the hint published in presence: "symmetric" sends hopeless
// pairs straight to a relay.
type NATType string

// NAT types.
const (
	NATUnknown   NATType = "unknown"
	NATCone      NATType = "cone"      // endpoint-independent mapping: punchable
	NATSymmetric NATType = "symmetric" // endpoint-dependent mapping
)

// EventKind is the kind of an Event.
type EventKind string

// Event kinds.
const (
	EventConnected    EventKind = "connected"    // first live path to Peer
	EventDisconnected EventKind = "disconnected" // no live path to Peer any more
	EventPathChanged  EventKind = "path"         // Path changed, e.g. relayed → punched
	EventReachability EventKind = "reachability" // Reachability changed
	EventNATType      EventKind = "nat"          // NAT type hint changed
	EventReservation  EventKind = "reservation"  // a reservation attempt on relay Peer ended (Err says why it failed)
)

// Event is one change the node may act on. Events are delivered on
// Transport.Events; a consumer that does not keep up loses events (counted
// and logged), never blocks the transport.
type Event struct {
	Kind         EventKind
	Peer         peer.ID
	Path         Path         // the new path (connected, disconnected, path)
	Prev         Path         // the previous path (path)
	Addr         ma.Multiaddr // remote address of the best connection, if any
	Reachability Reachability // for EventReachability
	NAT          NATType      // for EventNATType
	Err          string       // for EventReservation: why it failed, "" when it succeeded
	Time         time.Time
}

// Handler handles one received message. Returning nil ACKs it (the sender's
// Send returns nil); an error NACKs it and its text travels to the sender.
// ctx ends when the transport closes.
type Handler func(ctx context.Context, from peer.ID, msg []byte) error
