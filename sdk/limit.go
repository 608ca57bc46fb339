package sdk

import (
	"fmt"
	"io"
	"net/http"
	"sync"
)

// LimitTransport is an http.RoundTripper that bounds every response body,
// for adapters of HTTP services (or of a library that takes an
// *http.Client): a response whose Content-Length is over Max is refused
// before anything is read, and a body without one fails on the read that
// passes Max. Either way the error is CodeUnavailable and names the
// request and the limit, so a server (or anyone in its place) that answers
// with a never-ending or giant body costs at most Max bytes, and the
// subscription retries with backoff instead of growing without bound.
//
// Set Max above the largest answer the service sends legitimately (a page
// of items with their metadata); it bounds one response, not the channel.
type LimitTransport struct {
	// Base does the requests (default http.DefaultTransport).
	Base http.RoundTripper
	// Max is the most bytes one response body may have.
	Max int64
}

func (t *LimitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	return LimitResponse(req, resp, t.Max)
}

// CloseIdleConnections closes Base's idle connections (http.Client's
// CloseIdleConnections reaches Base through it).
func (t *LimitTransport) CloseIdleConnections() {
	if c, ok := t.Base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// LimitResponse applies LimitTransport's bound to one response, for an
// adapter with a RoundTripper of its own: it refuses (closing the body) a
// response whose Content-Length is over max, and makes its body fail on
// the read that passes max. A max of 0 or less leaves resp as it is.
func LimitResponse(req *http.Request, resp *http.Response, max int64) (*http.Response, error) {
	if resp == nil || resp.Body == nil || max <= 0 {
		return resp, nil
	}
	op := req.Method + " " + req.URL.Redacted()
	if resp.ContentLength > max {
		resp.Body.Close()
		return nil, tooLargeResponse(op, max, fmt.Sprintf("%d bytes announced", resp.ContentLength))
	}
	resp.Body = &limitedBody{rc: resp.Body, left: max, op: op, max: max}
	return resp, nil
}

// tooLargeResponse is the error for a response body over the limit.
func tooLargeResponse(op string, max int64, what string) error {
	return &Error{Code: CodeUnavailable, Message: fmt.Sprintf(
		"%s: the server's answer is larger than the adapter accepts (%s, limit %d bytes): refused, retrying later", op, what, max)}
}

// limitedBody reads at most max bytes of rc and fails past them.
type limitedBody struct {
	mu   sync.Mutex
	rc   io.ReadCloser
	left int64
	op   string
	max  int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.left < 0 {
		return 0, tooLargeResponse(b.op, b.max, "more sent")
	}
	// Read one byte past the limit to tell a body of exactly max bytes
	// from a longer one.
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n + int(b.left), tooLargeResponse(b.op, b.max, "more sent")
	}
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }
