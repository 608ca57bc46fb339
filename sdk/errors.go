package sdk

import (
	"errors"
	"fmt"
	"time"
)

// Code classifies an adapter error. Codes are part of the wire protocol: their
// numbers never change.
type Code int

const (
	CodeUnknown         Code = 0
	CodeUnsupported     Code = 1 // the channel lacks this capability
	CodeAuthFailed      Code = 2 // credentials rejected; retrying will not help
	CodeNeedsUserAction Code = 3 // e.g. OAuth re-consent, accept terms, verify mail
	CodeNotFound        Code = 4 // room, folder, repo or item does not exist
	CodeRateLimited     Code = 5 // slow down; RetryAfter says how long
	CodeTooLarge        Code = 6 // item exceeds MaxPayload
	CodeCursorInvalid   Code = 7 // the cursor can no longer be resumed from
	CodeUnavailable     Code = 8 // transient: server down, network; retry with backoff
	CodeBadConfig       Code = 9 // configuration is invalid; Message names the field
	// CodeInvalidArgument: the request itself is wrong (an idempotency or
	// board key that breaks the key rule, a malformed ID); retrying it
	// unchanged fails again. Added in protocol 1 after the first release:
	// an older host reads it as unknown.
	CodeInvalidArgument Code = 10
)

// MaxCode is the highest code this version of the protocol defines. A host
// that receives a higher one treats it as CodeUnknown and says so.
const MaxCode = CodeInvalidArgument

var codeNames = map[Code]string{
	CodeUnknown:         "unknown",
	CodeUnsupported:     "unsupported",
	CodeAuthFailed:      "auth failed",
	CodeNeedsUserAction: "needs user action",
	CodeNotFound:        "not found",
	CodeRateLimited:     "rate limited",
	CodeTooLarge:        "too large",
	CodeCursorInvalid:   "cursor invalid",
	CodeUnavailable:     "unavailable",
	CodeBadConfig:       "bad config",
	CodeInvalidArgument: "invalid argument",
}

func (c Code) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("code(%d)", int(c))
}

// Known reports whether c is a code this version of the protocol defines.
func (c Code) Known() bool { return c >= CodeUnknown && c <= MaxCode }

// Retryable reports whether an operation that failed with this code will
// likely succeed when retried unchanged (after RetryAfter, or with backoff):
// CodeRateLimited and CodeUnavailable.
//
// CodeUnknown is not: an error the adapter did not classify may be a
// passing network failure or a configuration that will never work. Hosts
// retry it at most MaxUnknownRetries times, then give up and report it, so
// an adapter that wants a failure retried must say CodeUnavailable.
func (c Code) Retryable() bool {
	return c == CodeRateLimited || c == CodeUnavailable
}

// MaxUnknownRetries is how many times a host retries an operation that
// failed with CodeUnknown before it reports the failure as final.
const MaxUnknownRetries = 3

// Error is an adapter error that keeps its Code, Message and RetryAfter across
// the process boundary.
type Error struct {
	Code Code
	// Message says what happened and what the user can do about it.
	Message string
	// RetryAfter is set with CodeRateLimited (and may be with CodeUnavailable).
	RetryAfter time.Duration
	// Err is the underlying cause. It does not cross the process boundary;
	// Message should already say what it means.
	Err error
}

func (e *Error) Error() string {
	msg := e.Code.String()
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.Message == "" && e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	if e.RetryAfter > 0 {
		msg += fmt.Sprintf(" (retry after %s)", e.RetryAfter)
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrRateLimited) true for any *Error of that code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Err == nil && t.Code == e.Code
}

// Sentinels for errors.Is. Compare codes, never these pointers' messages.
var (
	ErrUnsupported     = &Error{Code: CodeUnsupported}
	ErrAuthFailed      = &Error{Code: CodeAuthFailed}
	ErrNeedsUserAction = &Error{Code: CodeNeedsUserAction}
	ErrNotFound        = &Error{Code: CodeNotFound}
	ErrRateLimited     = &Error{Code: CodeRateLimited}
	ErrTooLarge        = &Error{Code: CodeTooLarge}
	ErrCursorInvalid   = &Error{Code: CodeCursorInvalid}
	ErrUnavailable     = &Error{Code: CodeUnavailable}
	ErrBadConfig       = &Error{Code: CodeBadConfig}
	ErrInvalidArgument = &Error{Code: CodeInvalidArgument}
)

// ErrClosed is what every call on a channel returns after its Close (the
// Lifecycle helper returns it). It is a host-side condition, not a service
// one, so it has no Code: a host never sends calls to a channel it closed.
var ErrClosed = errors.New("channel closed")

// Errorf returns an *Error with code and a formatted message. A %w verb in
// format also keeps that error as Err, for errors.Is on the adapter's side.
//
// It returns the error interface, never a typed nil: assigning its result
// to an error variable and comparing with nil does what it says.
func Errorf(code Code, format string, args ...any) error {
	wrapped := fmt.Errorf(format, args...)
	return &Error{Code: code, Message: wrapped.Error(), Err: errors.Unwrap(wrapped)}
}

// RateLimited returns a CodeRateLimited error with a retry-after.
func RateLimited(retryAfter time.Duration, format string, args ...any) error {
	return &Error{Code: CodeRateLimited, Message: fmt.Sprintf(format, args...), RetryAfter: retryAfter}
}

// CodeOf returns the Code of the first *Error in err's chain, CodeUnknown if
// there is none.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeUnknown
}

// RetryAfterOf returns the retry-after of the first *Error in err's chain.
func RetryAfterOf(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}
