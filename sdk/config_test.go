package sdk_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/remora-p2p/remora/sdk"
)

type testConfig struct {
	Path         string       `json:"path"`
	PollInterval sdk.Duration `json:"poll_interval,omitempty"`
	MaxPayload   int          `json:"max_payload,omitempty"`
	Accounts     []string     `json:"accounts,omitempty"`
	Redact       *bool        `json:"redact,omitempty"`
	internal     int          //lint:ignore U1000 an unexported field DecodeConfig must leave alone
}

func TestDecodeConfig(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" for success
	}{
		{`{"path": "/srv", "poll_interval": "1s", "max_payload": 10, "accounts": ["a"], "redact": true}`, ""},
		{``, "config is empty: give a JSON object with the fields path, poll_interval, max_payload, accounts, redact"},
		{`   `, "config is empty"},
		{`{"pth": "/srv"}`, `config: unknown field "pth": the fields are path, poll_interval, max_payload, accounts, redact`},
		{`{"path": 5}`, `config: "path" must be a string, got 5`},
		{`{"path": "/srv", "max_payload": "big"}`, `config: "max_payload" must be a whole number, got "big"`},
		{`{"poll_interval": "soon"}`, `config: "poll_interval" is "soon": want a duration such as "250ms" or "1h"`},
		{`{"poll_interval": 5}`, `config: "poll_interval" is 5: want a duration such as "250ms" or "1h"`},
		{`{"accounts": "a"}`, `config: "accounts" must be a list, got "a"`},
		{`{"redact": "yes"}`, `config: "redact" must be true or false, got "yes"`},
		{`{"path": "/srv"`, "config: not valid JSON: it ends too early"},
		{`{"path" "/srv"}`, "config: not valid JSON at byte 9"},
		{`{"path": "/srv"} {}`, "config: trailing data after the JSON object"},
		{`["/srv"]`, "config: want a JSON object with the fields path, poll_interval, max_payload, accounts, redact, got array"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var c testConfig
			err := sdk.DecodeConfig([]byte(tt.in), &c)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tt.want == "":
				if c.Path != "/srv" || c.PollInterval.D().String() != "1s" || c.MaxPayload != 10 || *c.Redact != true {
					t.Fatalf("decoded %+v", c)
				}
			case !errors.Is(err, sdk.ErrBadConfig):
				t.Fatalf("got %v, want a bad config error", err)
			case !strings.Contains(err.Error(), tt.want):
				t.Fatalf("got %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func ExampleDecodeConfig() {
	var cfg struct {
		URL          string       `json:"url"`
		PollInterval sdk.Duration `json:"poll_interval"`
	}
	fmt.Println(sdk.DecodeConfig([]byte(`{"url": "http://127.0.0.1:8080/circle", "poll_intervall": "1s"}`), &cfg))
	fmt.Println(sdk.DecodeConfig([]byte(`{"url": "http://127.0.0.1:8080/circle", "poll_interval": 1}`), &cfg))
	// Output:
	// bad config: config: unknown field "poll_intervall": the fields are url, poll_interval
	// bad config: config: "poll_interval" is 1: want a duration such as "250ms" or "1h"
}
