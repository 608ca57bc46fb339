package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/remora-p2p/remora/sdk"
)

func TestHTTPError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status, _ := strconv.Atoi(r.URL.Query().Get("status"))
		if ra := r.URL.Query().Get("retry"); ra != "" {
			w.Header().Set("Retry-After", ra)
		}
		w.WriteHeader(status)
		fmt.Fprint(w, "  the server's\nown   words  ")
	}))
	defer srv.Close()
	tests := []struct {
		status int
		retry  string
		code   sdk.Code
		after  time.Duration
	}{
		{401, "", sdk.CodeAuthFailed, 0},
		{403, "", sdk.CodeNeedsUserAction, 0},
		{404, "", sdk.CodeNotFound, 0},
		{410, "", sdk.CodeNotFound, 0},
		{413, "", sdk.CodeTooLarge, 0},
		{429, "7", sdk.CodeRateLimited, 7 * time.Second},
		{429, "", sdk.CodeRateLimited, time.Second}, // no header: a second, never zero
		{400, "", sdk.CodeInvalidArgument, 0},
		{412, "", sdk.CodeInvalidArgument, 0},
		{500, "", sdk.CodeUnavailable, 0},
		{503, "120", sdk.CodeUnavailable, 2 * time.Minute},
		{418, "", sdk.CodeUnknown, 0},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status, tt.retry), func(t *testing.T) {
			resp, err := http.Get(srv.URL + "/x?status=" + strconv.Itoa(tt.status) + "&retry=" + tt.retry)
			got := sdk.HTTPError("test: get", resp, err)
			var e *sdk.Error
			if !errors.As(got, &e) || e.Code != tt.code || e.RetryAfter != tt.after {
				t.Fatalf("status %d: got %#v, want code %s retry %v", tt.status, got, tt.code, tt.after)
			}
			want := fmt.Sprintf("test: get: server answered %d %s: the server's own words", tt.status, http.StatusText(tt.status))
			if len(e.Message) < len(want) || e.Message[:len(want)] != want {
				t.Fatalf("message %q, want it to start %q", e.Message, want)
			}
		})
	}
	resp, err := http.Get(srv.URL + "/x?status=204")
	if got := sdk.HTTPError("test", resp, err); got != nil {
		t.Fatalf("204: %v", got)
	}
	resp.Body.Close()
}

func TestHTTPErrorNetwork(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	resp, err := http.Get("http://" + addr + "/")
	if got := sdk.HTTPError("test", resp, err); !errors.Is(got, sdk.ErrUnavailable) {
		t.Fatalf("refused: %v, want ErrUnavailable", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/", nil)
	resp, err = http.DefaultClient.Do(req)
	if got := sdk.HTTPError("test", resp, err); !errors.Is(got, context.Canceled) {
		t.Fatalf("cancelled: %v, want context.Canceled", got)
	}
	var life sdk.Lifecycle // a call that Close ended: its cause, not an outage
	cctx, end, _ := life.Begin(context.Background())
	defer end()
	go life.Close(nil)
	<-cctx.Done()
	req, _ = http.NewRequestWithContext(cctx, "GET", "http://"+addr+"/", nil)
	resp, err = http.DefaultClient.Do(req)
	if got := sdk.HTTPError("test", resp, err); sdk.CodeOf(got) == sdk.CodeUnavailable {
		t.Fatalf("closed: %v, want the context's error, not unavailable", got)
	}
	tls := httptest.NewUnstartedServer(http.NotFoundHandler())
	tls.Config.ErrorLog = log.New(io.Discard, "", 0)
	tls.StartTLS()
	defer tls.Close()
	resp, err = http.Get(tls.URL) // the default client does not trust it
	if got := sdk.HTTPError("test", resp, err); !errors.Is(got, sdk.ErrNeedsUserAction) {
		t.Fatalf("untrusted certificate: %v, want ErrNeedsUserAction", got)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                              0,
		"30":                            30 * time.Second,
		"-5":                            0,
		"999999999":                     24 * time.Hour,
		"Wed, 25 Nov 2026 12:01:00 GMT": time.Minute,
		"Wed, 25 Nov 2026 11:00:00 GMT": 0,
		"soon":                          0,
	} {
		h := http.Header{}
		h.Set("Retry-After", v)
		if got := sdk.RetryAfter(h, now); got != want {
			t.Errorf("Retry-After %q: %v, want %v", v, got, want)
		}
	}
}

func ExampleHTTPError() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "30")
		http.Error(w, "slow down", http.StatusTooManyRequests)
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/log/k1")
	if err := sdk.HTTPError("httpfile: get k1", resp, err); err != nil {
		fmt.Println(err)
		fmt.Println(errors.Is(err, sdk.ErrRateLimited), sdk.RetryAfterOf(err))
		return
	}
	defer resp.Body.Close()
	// Output:
	// rate limited: httpfile: get k1: server answered 429 Too Many Requests: slow down (retry after 30s)
	// true 30s
}
