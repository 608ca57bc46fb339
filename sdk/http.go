package sdk

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// HTTPError classifies the outcome of an HTTP request for adapters of HTTP
// services. Pass what http.Client.Do returned:
//
//	resp, err := c.http.Do(req)
//	if err := sdk.HTTPError("httpfile: put "+key, resp, err); err != nil {
//		return err
//	}
//	defer resp.Body.Close()
//
// It returns nil for a response below 400, leaving its body to the caller.
// Otherwise it closes the body and returns:
//
//   - the context's own error when ctx ended (the caller cancelled);
//   - CodeUnavailable for a failure to reach the server (refused, reset,
//     timed out): retry with backoff; CodeNeedsUserAction for a server
//     certificate that does not verify;
//   - 401 → CodeAuthFailed; 403 → CodeNeedsUserAction (the account lacks a
//     permission or must accept something); 404, 410 → CodeNotFound;
//     413 → CodeTooLarge; 429 → CodeRateLimited with the Retry-After;
//     400, 405, 409, 412, 422 → CodeInvalidArgument; 408, 425, 500, 502,
//     503, 504 and any other 5xx → CodeUnavailable (with Retry-After if the
//     server sent one); anything else → CodeUnknown.
//
// The message is op, the status, and the start of the response body.
func HTTPError(op string, resp *http.Response, err error) error {
	if err != nil {
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrClosed) {
			return err // the caller ended the call (Lifecycle.Close: the cause is ErrClosed)
		}
		var cv *tls.CertificateVerificationError
		if errors.As(err, &cv) {
			return &Error{Code: CodeNeedsUserAction, Message: fmt.Sprintf("%s: the server's TLS certificate is not trusted (%v): check the address, or give the CA", op, cv.Err), Err: err}
		}
		return &Error{Code: CodeUnavailable, Message: fmt.Sprintf("%s: cannot reach the server: %v", op, err), Err: err}
	}
	if resp.StatusCode < 400 {
		return nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	msg := fmt.Sprintf("%s: server answered %s", op, resp.Status)
	if s := bodyText(body); s != "" {
		msg += ": " + s
	}
	retry := RetryAfter(resp.Header, time.Now())
	e := &Error{Code: HTTPCode(resp.StatusCode), Message: msg}
	switch e.Code {
	case CodeRateLimited:
		if retry <= 0 {
			retry = time.Second
		}
		e.RetryAfter = retry
	case CodeUnavailable:
		e.RetryAfter = retry
	case CodeAuthFailed:
		e.Message += " (check the token or password)"
	case CodeNeedsUserAction:
		e.Message += " (the account lacks a permission for this; grant it on the service)"
	}
	return e
}

// HTTPCode is the Code for an HTTP status of 400 or more (see HTTPError).
func HTTPCode(status int) Code {
	switch status {
	case http.StatusUnauthorized:
		return CodeAuthFailed
	case http.StatusForbidden:
		return CodeNeedsUserAction
	case http.StatusNotFound, http.StatusGone:
		return CodeNotFound
	case http.StatusRequestEntityTooLarge:
		return CodeTooLarge
	case http.StatusTooManyRequests:
		return CodeRateLimited
	case http.StatusBadRequest, http.StatusMethodNotAllowed, http.StatusConflict,
		http.StatusPreconditionFailed, http.StatusUnprocessableEntity:
		return CodeInvalidArgument
	case http.StatusRequestTimeout, http.StatusTooEarly:
		return CodeUnavailable
	}
	if status >= 500 && status <= 599 {
		return CodeUnavailable
	}
	return CodeUnknown
}

// RetryAfter reads a Retry-After header (delay in seconds, or an HTTP
// date, relative to now). It returns 0 when there is none or it is in the
// past, and caps absurd values at one day.
func RetryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		d = time.Duration(min(n, 86400)) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return max(0, min(d, 24*time.Hour))
}

// bodyText is the start of an error body fit for a log line: one line of
// valid UTF-8 text, or "" for binary.
func bodyText(b []byte) string {
	if !utf8.Valid(b) {
		return ""
	}
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 200 {
		s = s[:200]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
		s += "…"
	}
	return s
}
