package sdk_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/remora-p2p/remora/sdk"
)

// TestErrorfNeverTypedNil: Errorf's result compares with nil as an error
// does. (It used to return *sdk.Error, and a helper returning that type
// handed callers a non-nil error interface holding a nil pointer.)
func TestErrorfNeverTypedNil(t *testing.T) {
	check := func(fail bool) error {
		if fail {
			return sdk.Errorf(sdk.CodeBadConfig, "config: %q is required", "path")
		}
		return nil
	}
	if err := check(false); err != nil {
		t.Fatalf("a nil result is %#v", err)
	}
	err := check(true)
	if !errors.Is(err, sdk.ErrBadConfig) || err.Error() != `bad config: config: "path" is required` {
		t.Fatalf("got %v", err)
	}
	inner := errors.New("disk full")
	if w := sdk.Errorf(sdk.CodeUnavailable, "write: %w", inner); !errors.Is(w, inner) || !errors.Is(w, sdk.ErrUnavailable) {
		t.Fatalf("%%w lost: %v", w)
	}
}

func TestCodes(t *testing.T) {
	tests := []struct {
		code             sdk.Code
		known, retryable bool
		name             string
	}{
		{sdk.CodeUnknown, true, false, "unknown"},
		{sdk.CodeRateLimited, true, true, "rate limited"},
		{sdk.CodeUnavailable, true, true, "unavailable"},
		{sdk.CodeBadConfig, true, false, "bad config"},
		{sdk.CodeInvalidArgument, true, false, "invalid argument"},
		{sdk.Code(11), false, false, "code(11)"},
		{sdk.Code(-1), false, false, "code(-1)"},
	}
	for _, tt := range tests {
		if tt.code.Known() != tt.known || tt.code.Retryable() != tt.retryable || tt.code.String() != tt.name {
			t.Errorf("code %d: known %v retryable %v name %q", tt.code, tt.code.Known(), tt.code.Retryable(), tt.code.String())
		}
	}
	if !errors.Is(sdk.Errorf(sdk.CodeInvalidArgument, "x"), sdk.ErrInvalidArgument) {
		t.Error("ErrInvalidArgument does not match its code")
	}
}

func TestValidKey(t *testing.T) {
	long := "k1234567890123456789012345678901234567890123456789012345678901234" // 65
	for k, want := range map[string]bool{
		"a": true, "AZaz09-_": true, long[:64]: true,
		"": false, long: false, "../x": false, "a/b": false, "a b": false, "a.b": false, "é": false, "a\n": false,
	} {
		if sdk.ValidKey(k) != want {
			t.Errorf("ValidKey(%q) = %v", k, !want)
		}
		err := sdk.CheckKey("board key", k)
		if (err == nil) != want || (err != nil && !errors.Is(err, sdk.ErrInvalidArgument)) {
			t.Errorf("CheckKey(%q) = %v", k, err)
		}
	}
}

func ExampleValidKey() {
	for _, k := range []string{"Jd3q9x-_", "../../etc/passwd", ""} {
		fmt.Println(sdk.ValidKey(k), sdk.CheckKey("board key", k))
	}
	// Output:
	// true <nil>
	// false invalid argument: board key "../../etc/passwd": want 1 to 64 characters of [A-Za-z0-9_-]
	// false invalid argument: board key "": want 1 to 64 characters of [A-Za-z0-9_-]
}

func ExampleErrorf() {
	err := sdk.Errorf(sdk.CodeBadConfig, "httpfile: config: %q is required: the store's base URL", "url")
	fmt.Println(errors.Is(err, sdk.ErrBadConfig), sdk.CodeOf(err).Retryable())
	fmt.Println(err)
	// Output:
	// true false
	// bad config: httpfile: config: "url" is required: the store's base URL
}
