package discovery

import (
	"context"
	"errors"
)

// Board is a box that keeps the circles' sealed presence entries for
// members to read: the latest value per opaque key (a board key derived
// from the circle's epoch secret, so the host cannot tell whose entry it
// is). The static web file (core/webbox) and DNS TXT records (core/dnsbox)
// are boards. A board stores only what members sealed: a stranger who
// writes garbage there wastes a read, nothing more, since every value must
// open as an envelope of the circle and carry a member's signed record.
type Board interface {
	// Name is the box's name in the report ("web", "dns").
	Name() string
	// Put replaces this node's entries with entries (board key → sealed
	// envelope): what the node wrote before under keys no longer given
	// goes. ErrReadOnly when the box is configured to read only.
	Put(ctx context.Context, entries map[string][]byte) error
	// Get returns every entry; ErrNotModified when nothing changed since
	// the last Get (an ETag, a DNS serial): the poll costs next to nothing.
	Get(ctx context.Context) (map[string][]byte, error)
	// MaxValue is the largest sealed value the board carries, in bytes.
	MaxValue() int
}

// Errors of boards.
var (
	ErrReadOnly    = errors.New("discovery: box is read-only (no way to publish configured)")
	ErrNotModified = errors.New("discovery: not modified")
)

// BoxError is a box failure with what the user can do about it.
type BoxError struct {
	Err error
	Fix string
}

func (e *BoxError) Error() string { return e.Err.Error() }
func (e *BoxError) Unwrap() error { return e.Err }

// Fix returns the advice carried by err, or def.
func Fix(err error, def string) string {
	var be *BoxError
	if errors.As(err, &be) && be.Fix != "" {
		return be.Fix
	}
	return def
}
