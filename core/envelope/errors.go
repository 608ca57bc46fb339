package envelope

import (
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Errors returned by Open, classified so the node can decide what to do.
// Every error Open returns is an *OpenError wrapping exactly one of them;
// test with errors.Is.
var (
	// ErrMalformed: not an envelope (too short, bad framing, bad padding,
	// inconsistent fragments). Dropped and counted.
	ErrMalformed = errors.New("malformed envelope")
	// ErrUnsupported: a version or suite this implementation does not speak.
	// Dropped; not counted as a forgery (a newer peer may send it).
	ErrUnsupported = errors.New("unsupported envelope version or suite")
	// ErrNotForUs: no accepted epoch's tag key matches (another circle, an
	// unknown or retired epoch, another channel), or a direct envelope that
	// none of our box keys opens (it is addressed to another member). Ignored.
	ErrNotForUs = errors.New("envelope not for us")
	// ErrNotMember: the routing tag matched but the sender hint names no
	// member allowed to send under that epoch (removed after the grace
	// window, or a leaked epoch secret). Dropped and counted.
	ErrNotMember = errors.New("envelope sender is not a member")
	// ErrKeyNotYet: the sender is a member but its chain key for that epoch
	// has not arrived. Hold the raw envelope and retry Open when the key
	// arrives (OpenError names circle, epoch and sender), until expiry.
	ErrKeyNotYet = errors.New("sender key not arrived yet")
	// ErrForged: authentication failed — no message key decrypts it, the
	// signature does not verify for that sender in that context (for example
	// a direct message re-sealed to another recipient), or a reassembled
	// message does not verify. Dropped and counted.
	ErrForged = errors.New("forged envelope")
	// ErrExpired: past its expiry, or its timestamp is older than the
	// maximum age (plus skew). Dropped.
	ErrExpired = errors.New("envelope expired")
	// ErrFuture: timestamp more than the allowed skew ahead of our clock.
	// Dropped.
	ErrFuture = errors.New("envelope timestamp in the future")
	// ErrReplay: (sender, message ID) was already accepted. Dropped silently.
	ErrReplay = errors.New("envelope replayed")
	// ErrPending: not a failure. A fragment was authenticated and stored;
	// the message is returned by the Open call that completes it.
	ErrPending = errors.New("fragment held until the rest of the message arrives")
)

// Errors returned by Seal.
var (
	// ErrTooLarge: the message needs more fragments or bytes than allowed
	// (by the Sealer, or by the receiver's reassembly Limits).
	ErrTooLarge = errors.New("message too large")
	// ErrChannelTooSmall: the route's MaxSize cannot hold even one fragment
	// of this suite (e.g. MLKEM768-X25519 on a 500-character channel).
	ErrChannelTooSmall = errors.New("channel too small for this envelope suite")
)

// OpenError is the error Open returns. Circle, Epoch, Sender and ID are
// set as far as Open got: after the routing tag matched (Circle, Epoch),
// after the sender was identified (Sender), after the fragment frame was
// decrypted (ID). With ErrPending, ID names the message the fragment
// belongs to: a node that keeps the raw envelopes of pending fragments
// across restarts can index them by (Sender, ID) and delete them when that
// message is delivered.
type OpenError struct {
	Err    error // one of the Err… sentinels
	Circle CircleID
	Epoch  Epoch
	Sender peer.ID   // empty if unknown
	ID     MessageID // zero if unknown
	Detail string
}

func (e *OpenError) Error() string {
	s := "envelope: open: " + e.Err.Error()
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

func (e *OpenError) Unwrap() error { return e.Err }

func openErr(sentinel error, format string, args ...any) *OpenError {
	return &OpenError{Err: sentinel, Detail: fmt.Sprintf(format, args...)}
}
