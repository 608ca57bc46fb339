package imap

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/remora-p2p/remora/sdk"
)

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name, cfg, field string
	}{
		{"not json", `{`, "config"},
		{"unknown field", `{"mode":"list","imap":"h:993","username":"u","smtp":"h:465","address":"a@b","list_address":"l@b","pasword":"x"}`, "pasword"},
		{"no mode", `{"imap":"h:993"}`, `"mode"`},
		{"bad mode", `{"mode":"usenet"}`, `"mode"`},
		{"no imap", `{"mode":"shared","username":"u"}`, `"imap"`},
		{"imap not host:port", `{"mode":"shared","imap":"mail.example","username":"u"}`, `"imap"`},
		{"no username", `{"mode":"shared","imap":"h:993"}`, `"username"`},
		{"plaintext without the flag", `{"mode":"shared","imap":"h:143","imap_tls":"none","username":"u"}`, `insecure_plaintext`},
		{"bad tls mode", `{"mode":"shared","imap":"h:143","imap_tls":"ssl","username":"u"}`, `"imap_tls"`},
		{"list without smtp", `{"mode":"list","imap":"h:993","username":"u","address":"a@b","list_address":"l@b"}`, `"smtp"`},
		{"list without list address", `{"mode":"list","imap":"h:993","smtp":"h:465","username":"u","address":"a@b"}`, `"list_address"`},
		{"direct without address", `{"mode":"direct","imap":"h:993","smtp":"h:465","username":"u"}`, `"address"`},
		{"bad consumed", `{"mode":"shared","imap":"h:993","username":"u","consumed":"shred"}`, `"consumed"`},
		{"missing ca file", `{"mode":"shared","imap":"h:993","username":"u","ca_file":"/nonexistent/ca.pem"}`, `"ca_file"`},
		{"tiny max mail", `{"mode":"shared","imap":"h:993","username":"u","max_mail_bytes":1000}`, `"max_mail_bytes"`},
		{"folder repeated", `{"mode":"shared","imap":"h:993","username":"u","folder":"x","extra_folders":["x"]}`, `"extra_folders"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig([]byte(tt.cfg))
			if !errors.Is(err, sdk.ErrBadConfig) {
				t.Fatalf("got %v, want a bad config error", err)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("message %q does not name %s", err, tt.field)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := parseConfig([]byte(`{"mode":"list","imap":"mail.example:993","smtp":"mail.example:587","username":"ann","address":"ann@example.org","list_address":"Friends@Lists.example"}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.IMAPTLS != TLSImplicit || c.SMTPTLS != TLSStartTLS || c.Folder != "INBOX" || c.ListID != "friends.lists.example" || c.Consumed != ConsumedKeep || c.DrainInterval.D() != time.Second {
		t.Errorf("defaults: %+v", c)
	}
	s, err := parseConfig([]byte(`{"mode":"shared","imap":"mail.example:143","username":"team@example.org"}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.IMAPTLS != TLSStartTLS || s.Folder != defaultSharedFolder || s.Address != "team@example.org" {
		t.Errorf("shared defaults: %+v", s)
	}
	if caps := capabilities(s, true); caps.Validate() != nil || caps.Idempotency.Level != sdk.IdempotencyStrong || caps.Delete != sdk.DeleteNone {
		t.Errorf("shared capabilities: %+v", caps)
	}
	if err := New().Info().Defaults.Validate(); err != nil {
		t.Errorf("Info defaults: %v", err)
	}
}

func TestConfigureNeedsPassword(t *testing.T) {
	_, err := New().Configure(context.Background(), sdk.ConfigureRequest{Config: []byte(`{"mode":"shared","imap":"127.0.0.1:1","username":"u"}`)})
	if !errors.Is(err, sdk.ErrBadConfig) || !strings.Contains(err.Error(), `"password"`) {
		t.Fatalf("got %v, want a bad config error naming the password secret", err)
	}
}

// TestPublishRejectsBadItems: bad items fail one by one, before any network
// I/O, with errors that are not retried.
func TestPublishRejectsBadItems(t *testing.T) {
	cfg, err := parseConfig([]byte(`{"mode":"direct","imap":"127.0.0.1:1","smtp":"127.0.0.1:1","username":"u","address":"u@example.test","max_mail_bytes":65536}`))
	if err != nil {
		t.Fatal(err)
	}
	ch := &channel{cfg: cfg, counters: map[string]int64{}, sent: map[string]string{}}
	limit := ch.Capabilities().MaxPayload
	items := []sdk.PublishItem{
		{Data: []byte("x"), IdempotencyKey: "bad key!", To: []string{"a@example.test"}},
		{Data: nil, IdempotencyKey: "k2", To: []string{"a@example.test"}},
		{Data: []byte("x"), IdempotencyKey: "k3"},
		{Data: []byte("x"), IdempotencyKey: "k4", To: []string{"not an address"}},
		{Data: []byte(strings.Repeat("a", limit+1)), IdempotencyKey: "k5", To: []string{"a@example.test"}},
	}
	res, err := ch.Publish(context.Background(), sdk.PublishRequest{Items: items})
	if err != nil {
		t.Fatal(err)
	}
	want := []sdk.Code{sdk.CodeInvalidArgument, sdk.CodeUnsupported, sdk.CodeUnsupported, sdk.CodeUnsupported, sdk.CodeTooLarge}
	for i, r := range res.Results {
		if sdk.CodeOf(r.Err) != want[i] || sdk.CodeOf(r.Err).Retryable() {
			t.Errorf("item %d: got %v, want code %s", i, r.Err, want[i])
		}
	}
	ch.Close()
	if _, err := ch.Publish(context.Background(), sdk.PublishRequest{Items: items[:1]}); err == nil {
		t.Error("Publish after Close succeeded")
	}
}
