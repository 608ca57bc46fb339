package matrix

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"maunium.net/go/mautrix"

	"github.com/remora-p2p/remora/sdk"
)

// classify turns an error from the homeserver into an *sdk.Error with the
// code the host must act on. op names the operation for the message.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var se *sdk.Error
	if errors.As(err, &se) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var he mautrix.HTTPError
	if !errors.As(err, &he) {
		return sdk.Errorf(sdk.CodeUnavailable, "matrix: %s: %w", op, err)
	}
	if he.Response == nil {
		// The request never got an answer: network, DNS, TLS.
		return sdk.Errorf(sdk.CodeUnavailable, "matrix: %s: homeserver unreachable (check the homeserver URL, or retry later): %w", op, err)
	}
	status := he.Response.StatusCode
	code := ""
	if he.RespError != nil {
		code = he.RespError.ErrCode
	}
	switch {
	case status == http.StatusTooManyRequests || code == "M_LIMIT_EXCEEDED":
		return &sdk.Error{Code: sdk.CodeRateLimited, Message: "matrix: " + op + ": homeserver rate limit (M_LIMIT_EXCEEDED)", RetryAfter: retryAfter(he), Err: err}
	case code == "M_UNKNOWN_TOKEN" || code == "M_MISSING_TOKEN" || code == "M_USER_DEACTIVATED":
		return sdk.Errorf(sdk.CodeAuthFailed, "matrix: %s: access token rejected (%s): log in again or give a new access_token: %w", op, code, err)
	case code == "M_TOO_LARGE" || status == http.StatusRequestEntityTooLarge:
		return sdk.Errorf(sdk.CodeTooLarge, "matrix: %s: event too large for the homeserver: %w", op, err)
	case code == "M_NOT_FOUND":
		return sdk.Errorf(sdk.CodeNotFound, "matrix: %s: not found: %w", op, err)
	case code == "M_FORBIDDEN":
		return sdk.Errorf(sdk.CodeUnsupported, "matrix: %s: forbidden by the room or homeserver: %w", op, err)
	case status >= 500 || status == http.StatusRequestTimeout:
		return sdk.Errorf(sdk.CodeUnavailable, "matrix: %s: homeserver error, retry later: %w", op, err)
	}
	return sdk.Errorf(sdk.CodeUnknown, "matrix: %s: %w", op, err)
}

// retryAfter reads retry_after_ms from an M_LIMIT_EXCEEDED body, else the
// Retry-After header, else a conservative default.
func retryAfter(he mautrix.HTTPError) time.Duration {
	if he.RespError != nil {
		if ms, ok := he.RespError.ExtraData["retry_after_ms"].(float64); ok && ms > 0 {
			return time.Duration(ms) * time.Millisecond
		}
	}
	if he.Response != nil {
		if s, err := strconv.Atoi(he.Response.Header.Get("Retry-After")); err == nil && s > 0 {
			return time.Duration(s) * time.Second
		}
	}
	return time.Second
}

// matrixCode returns the Matrix errcode of err ("" if none).
func matrixCode(err error) string {
	var he mautrix.HTTPError
	if errors.As(err, &he) && he.RespError != nil {
		return he.RespError.ErrCode
	}
	return ""
}

// httpStatus returns the HTTP status of err (0 if there was no response).
func httpStatus(err error) int {
	var he mautrix.HTTPError
	if errors.As(err, &he) && he.Response != nil {
		return he.Response.StatusCode
	}
	return 0
}
