package git

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/remora-p2p/remora/sdk"
)

func TestParseLogPath(t *testing.T) {
	tests := []struct {
		path        string
		bucket, key string
		wantForeign bool
	}{
		{"log/2026112513/abc-DEF_9", "2026112513", "abc-DEF_9", false},
		{"log/2026112513/" + strings.Repeat("k", 64), "2026112513", strings.Repeat("k", 64), false},
		{"log/2026112513/" + strings.Repeat("k", 65), "", "", true},
		{"log/2026112599/key", "", "", true},  // hour 99
		{"log/202611251/key", "", "", true},   // short bucket
		{"log/2026112513/a.b", "", "", true},  // dot in key
		{"log/2026112513/../x", "", "", true}, // traversal
		{"log/2026112513", "", "", true},
		{"board/2026112513/key", "", "", true},
		{"README.md", "", "", true},
		{"log/2026112513/key/extra", "", "", true},
		{"", "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			b, k, err := parseLogPath(tt.path)
			if tt.wantForeign {
				if !errors.Is(err, errForeign) {
					t.Fatalf("parseLogPath(%q) = %q, %q, %v; want errForeign", tt.path, b, k, err)
				}
				return
			}
			if err != nil || b != tt.bucket || k != tt.key {
				t.Fatalf("parseLogPath(%q) = %q, %q, %v; want %q, %q", tt.path, b, k, err, tt.bucket, tt.key)
			}
			if got := logPath(b, k); got != tt.path {
				t.Fatalf("logPath round trip: %q", got)
			}
		})
	}
}

func TestCursorRoundTrip(t *testing.T) {
	h1 := plumbing.NewHash("1111111111111111111111111111111111111111")
	h2 := plumbing.NewHash("2222222222222222222222222222222222222222")
	tests := []cursor{
		{},
		{"m0": {Done: h1}},
		{"m0": {Done: h1, Target: h2, After: "log/2026112513/k"}, "m1": {Target: h2, After: "log/2026112513/z"}},
	}
	for i, c := range tests {
		got, err := decodeCursor(c.encode())
		if err != nil {
			t.Fatalf("case %d: decode: %v", i, err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("case %d: round trip %v, want %v", i, got, c)
		}
	}
}

func TestDecodeCursorRejects(t *testing.T) {
	bad := []string{
		`garbage`,
		`{"v":2,"refs":{}}`,
		`{"v":1,"refs":{"a/b":{"d":"1111111111111111111111111111111111111111"}}}`,
		`{"v":1,"refs":{"m":{}}}`,
		`{"v":1,"refs":{"m":{"d":"11"}}}`,
		`{"v":1,"refs":{"m":{"d":"ABCDEF1111111111111111111111111111111111"}}}`,
		`{"v":1,"refs":{"m":{"d":"0000000000000000000000000000000000000000"}}}`,
		`{"v":1,"refs":{"m":{"t":"1111111111111111111111111111111111111111"}}}`,
		`{"v":1,"refs":{"m":{"t":"1111111111111111111111111111111111111111","a":"README"}}}`,
	}
	for _, b := range bad {
		if _, err := decodeCursor([]byte(b)); !errors.Is(err, errBadCursor) {
			t.Errorf("decodeCursor(%s) = %v, want errBadCursor", b, err)
		}
	}
}

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name, cfg, field string
	}{
		{"empty", ``, "remote"},
		{"no remote", `{}`, "remote"},
		{"unknown field", `{"remote":"file:///r.git","remot":"x"}`, "remot"},
		{"wrong type", `{"remote":"file:///r.git","max_payload":"big"}`, "max_payload"},
		{"relative file", `{"remote":"file://r.git"}`, "remote"},
		{"plain http", `{"remote":"http://example.com/r.git"}`, "remote"},
		{"bad scheme", `{"remote":"ftp://example.com/r.git"}`, "remote"},
		{"namespace", `{"remote":"file:///r.git","namespace":"heads/remora"}`, "namespace"},
		{"member", `{"remote":"file:///r.git","member":"peer/id"}`, "member"},
		{"flush", `{"remote":"file:///r.git","flush_interval":"1ms"}`, "flush_interval"},
		{"poll order", `{"remote":"file:///r.git","poll_min":"10s","poll_max":"5s"}`, "poll_max"},
		{"retention", `{"remote":"file:///r.git","retention":"10m"}`, "retention"},
		{"max payload", `{"remote":"file:///r.git","max_payload":99999999}`, "max_payload"},
		{"key without ssh", `{"remote":"git://h/r.git","ssh_key_file":"/k"}`, "ssh_key_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig(json.RawMessage(tt.cfg))
			if !errors.Is(err, sdk.ErrBadConfig) {
				t.Fatalf("got %v, want a bad-config error", err)
			}
			if !strings.Contains(err.Error(), `"`+tt.field+`"`) {
				t.Fatalf("error %q does not name the field %q", err, tt.field)
			}
		})
	}
	c, err := parseConfig(json.RawMessage(`{"remote":"git@github.com:circle/repo.git","retention":"0s"}`))
	if err != nil {
		t.Fatalf("scp-like ssh remote: %v", err)
	}
	if c.Namespace != DefaultNamespace || c.PollMin.D() != DefaultPollMin || c.Retention.D() != 0 || c.MaxPayload != DefaultMaxPayload {
		t.Fatalf("defaults not applied: %+v", c)
	}
	if caps := capabilities(c); caps.Idempotency.Level != sdk.IdempotencyStrong || caps.Validate() != nil {
		t.Fatalf("retention 0 must give strong idempotency: %+v", caps)
	}
}

func TestMemberIDPersisted(t *testing.T) {
	dir := t.TempDir()
	a, err := memberID("", dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := memberID("", dir)
	if err != nil || a != b || !memberRE.MatchString(a) {
		t.Fatalf("member ID %q then %q (%v): want the same persisted opaque ID", a, b, err)
	}
}

func TestExpired(t *testing.T) {
	now := time.Now()
	if expired(now.Add(-2*time.Hour), 0) {
		t.Error("retention 0 keeps forever")
	}
	if !expired(now.Add(-50*time.Hour), 48*time.Hour) {
		t.Error("a bucket older than retention+span is expired")
	}
	if expired(now.Add(-47*time.Hour), 48*time.Hour) {
		t.Error("a bucket within retention is kept")
	}
}

func FuzzDecodeCursor(f *testing.F) {
	f.Add([]byte(`{"v":1,"refs":{"m0":{"d":"1111111111111111111111111111111111111111"}}}`))
	f.Add([]byte(`{"v":1,"refs":{"m0":{"t":"1111111111111111111111111111111111111111","a":"log/2026112513/k"}}}`))
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeCursor(b)
		if err != nil {
			if !errors.Is(err, errBadCursor) {
				t.Fatalf("error %v is not errBadCursor", err)
			}
			return
		}
		again, err := decodeCursor(c.encode())
		if err != nil || !reflect.DeepEqual(again, c) {
			t.Fatalf("re-decode of an accepted cursor: %v, %v != %v", err, again, c)
		}
	})
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"log/2026112513/key", "board/a2V5", "log//x", "m0/2026112513/key", "../../etc/passwd"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if b, k, err := parseLogPath(p); err == nil {
			if logPath(b, k) != p || !keyRE.MatchString(k) {
				t.Fatalf("accepted %q as %q %q", p, b, k)
			}
		}
		if key, err := parseBoardName(p); err == nil {
			if boardName(key) != p || strings.Contains(p, "/") {
				t.Fatalf("board name %q accepted as %q", p, key)
			}
		}
		if m, b, k, err := parseItemID(p); err == nil {
			if itemID(m, b, k) != p {
				t.Fatalf("item ID %q accepted as %q %q %q", p, m, b, k)
			}
		}
	})
}
