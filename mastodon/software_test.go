package mastodon

import (
	"slices"
	"testing"

	gomasto "github.com/mattn/go-mastodon"

	"github.com/remora-p2p/remora/sdk"
)

func TestDetectSoftware(t *testing.T) {
	for _, tc := range []struct {
		source, version string
		want            software
	}{
		{"https://github.com/mastodon/mastodon", "4.3.2", softMastodon},
		{"https://github.com/glitch-soc/mastodon/", "4.3.2+glitch", softMastodon},
		{"https://codeberg.org/superseriousbusiness/gotosocial", "0.19.2", softGoToSocial},
		{"https://codeberg.org/superseriousbusiness/gotosocial", "3.5.3+0.19.2", softGoToSocial}, // instance-inject-mastodon-version
		{"", "0.19.2+git-abc gotosocial", softGoToSocial},
		{"", "3.5.3", softMastodon}, // a v1-only (pre-4.0) Mastodon
		{"", "2.7.2 (compatible; Pleroma 2.5.0)", softOther},
		{"https://akkoma.dev/AkkomaGang/akkoma", "2.7.2 (compatible; Akkoma 3.13.2)", softOther},
		{"", "", softOther},
	} {
		if got := detectSoftware(tc.source, tc.version); got != tc.want {
			t.Errorf("detectSoftware(%q, %q) = %s, want %s", tc.source, tc.version, got, tc.want)
		}
	}
}

func TestMentionCost(t *testing.T) {
	local, remote := acct{user: "bob"}, acct{user: "bob", domain: "far.example"}
	for _, tc := range []struct {
		a            acct
		mastodonRule bool
		want         int
	}{
		{local, true, len("@bob ")},
		{local, false, len("@bob ")},
		{remote, true, len("@bob ")},              // Mastodon counts the local part only
		{remote, false, len("@bob@far.example ")}, // GoToSocial counts what is written
	} {
		if got := tc.a.cost(tc.mastodonRule); got != tc.want {
			t.Errorf("%s.cost(%v) = %d, want %d", tc.a, tc.mastodonRule, got, tc.want)
		}
	}
}

func TestStreamBases(t *testing.T) {
	for _, tc := range []struct {
		name, server, advertised string
		want                     []string
	}{
		{"none advertised", "http://localhost:18080", "", []string{"http://localhost:18080"}},
		// GoToSocial on plain http advertises wss://HOST (port 443).
		{"own host, wrong scheme and port", "http://localhost:18080", "wss://localhost", []string{"http://localhost:18080"}},
		{"own host, case", "https://Social.Example", "wss://social.example", []string{"https://Social.Example"}},
		{"separate streaming host", "https://social.example", "wss://streaming.social.example/", []string{"wss://streaming.social.example", "https://social.example"}},
		{"garbage", "https://social.example", "::not a url", []string{"https://social.example"}},
		{"not a websocket scheme", "https://social.example", "ftp://x.example", []string{"https://social.example"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &channel{cfg: Config{Server: tc.server}, inst: instanceInfo{streaming: tc.advertised}}
			if got := c.streamBases(); !slices.Equal(got, tc.want) {
				t.Errorf("streamBases = %q, want %q", got, tc.want)
			}
			// The one that worked comes first next time.
			c.streamBase.Store(tc.server)
			if got := c.streamBases(); got[0] != tc.server {
				t.Errorf("after %s worked: %q", tc.server, got)
			}
		})
	}
}

func TestOverLimitAnswers(t *testing.T) {
	for _, tc := range []struct {
		status int
		msg    string
		want   sdk.Code
	}{
		{422, "Validation failed: Text character limit of 500 exceeded", sdk.CodeTooLarge},            // Mastodon
		{400, "Bad Request: text with spoiler exceed max chars (500)", sdk.CodeTooLarge},              // GoToSocial
		{422, "Validation failed: Text can't be blank", sdk.CodeUnknown},                              // refused, not too large
		{400, "Bad Request: status contains no text, media or poll", sdk.CodeUnknown},                 // likewise
		{500, "Internal Server Error: text with spoiler exceed max chars (500)", sdk.CodeUnavailable}, // a server error stays retryable
	} {
		err := classify("publish", &gomasto.APIError{StatusCode: tc.status, Message: tc.msg})
		if got := sdk.CodeOf(err); got != tc.want {
			t.Errorf("%d %q: %s, want %s (%v)", tc.status, tc.msg, got, tc.want, err)
		}
	}
}
