package sdk_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/remora-p2p/remora/sdk"
)

// TestLimitTransport: a body of exactly Max bytes is read whole; a giant
// Content-Length is refused before reading, and a never-ending body
// without one fails once past Max, both with CodeUnavailable naming the
// limit.
func TestLimitTransport(t *testing.T) {
	const max = 1 << 16
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/exact":
			w.Write([]byte(strings.Repeat("x", max)))
		case "/announced":
			w.Header().Set("Content-Length", fmt.Sprint(int64(1)<<40))
			w.WriteHeader(200)
			w.Write([]byte("x"))
		case "/endless":
			fl := w.(http.Flusher)
			chunk := []byte(strings.Repeat("y", 4096))
			for r.Context().Err() == nil {
				if _, err := w.Write(chunk); err != nil {
					return
				}
				fl.Flush()
			}
		}
	}))
	defer srv.Close()
	c := &http.Client{Transport: &sdk.LimitTransport{Max: max}}
	for _, tc := range []struct {
		path string
		want int // bytes read; -1: the request itself fails
	}{
		{"/exact", max},
		{"/announced", -1},
		{"/endless", max},
	} {
		t.Run(tc.path, func(t *testing.T) {
			resp, err := c.Get(srv.URL + tc.path)
			if tc.want < 0 {
				if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "limit 65536 bytes") {
					t.Fatalf("got %v, want CodeUnavailable naming the limit", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if len(b) != tc.want {
				t.Errorf("read %d bytes, want %d", len(b), tc.want)
			}
			if tc.path == "/exact" && err != nil {
				t.Errorf("a body of exactly the limit: %v", err)
			}
			if tc.path == "/endless" && (!errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "limit 65536 bytes")) {
				t.Errorf("endless body: %v, want CodeUnavailable naming the limit", err)
			}
		})
	}
}
