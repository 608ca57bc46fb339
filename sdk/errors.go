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
)

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
}

func (c Code) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("code(%d)", int(c))
}

// Retryable reports whether an operation that failed with this code may
// succeed when retried unchanged (after RetryAfter, or with backoff).
func (c Code) Retryable() bool {
	return c == CodeRateLimited || c == CodeUnavailable || c == CodeUnknown
}

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
)

// Errorf returns an *Error with code and a formatted message. A %w verb in
// format also keeps that error as Err, for errors.Is on the adapter's side.
func Errorf(code Code, format string, args ...any) *Error {
	wrapped := fmt.Errorf(format, args...)
	return &Error{Code: code, Message: wrapped.Error(), Err: errors.Unwrap(wrapped)}
}

// RateLimited returns a CodeRateLimited error with a retry-after.
func RateLimited(retryAfter time.Duration, format string, args ...any) *Error {
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
