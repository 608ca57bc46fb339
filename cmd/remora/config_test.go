package main

import (
	"github.com/remora-p2p/remora/sdk"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/remora-p2p/remora/core/lan"
)

func TestTyped(t *testing.T) {
	tests := []struct {
		in   string
		want any
	}{
		{"true", true},
		{"42", int64(42)},
		{"250ms", "250ms"},
		{"[bob@a.example, carol]", []any{"bob@a.example", "carol"}},
		{"[]", []any{}},
		{"/path/with,comma", "/path/with,comma"},
	}
	for _, tt := range tests {
		if got := typed(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("typed(%q) = %#v, want %#v", tt.in, got, tt.want)
		}
	}
}

func TestResolveSecrets(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	os.WriteFile(file, []byte("from-file\n"), 0o600)
	t.Setenv("REMORA_TEST_SECRET", "from-env")
	ch := ChannelConfig{Name: "mail", Secrets: map[string]SecretRef{
		"a": {Env: "REMORA_TEST_SECRET"},
		"b": {File: file},
		"c": {Command: "printf 'from-command\\n'"},
	}}
	got, err := ch.resolveSecrets(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a": "from-env", "b": "from-file", "c": "from-command", sdk.SecretMarkKey: sdk.MarkKey("mail")}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	// the mark key follows the circle-wide channel ID, not the local name,
	// so every member's adapter gets the same one
	mine, _ := ChannelConfig{Name: "mine", ID: "friends"}.resolveSecrets(t.Context())
	theirs, _ := ChannelConfig{Name: "list", ID: "friends"}.resolveSecrets(t.Context())
	if mine[sdk.SecretMarkKey] != sdk.MarkKey("friends") || theirs[sdk.SecretMarkKey] != mine[sdk.SecretMarkKey] || sdk.MarkKey("friends") == sdk.MarkKey("mail") {
		t.Errorf("mark keys %q and %q: want MarkKey of the channel ID on both", mine[sdk.SecretMarkKey], theirs[sdk.SecretMarkKey])
	}
	failing := []struct {
		name string
		ref  SecretRef
		want string
	}{
		{"unset env", SecretRef{Env: "REMORA_TEST_UNSET_VARIABLE"}, "REMORA_TEST_UNSET_VARIABLE is not set"},
		{"missing file", SecretRef{File: filepath.Join(dir, "none")}, "no such file"},
		{"failing command", SecretRef{Command: "exit 3"}, "password command failed"},
	}
	for _, tt := range failing {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ChannelConfig{Name: "mail", Secrets: map[string]SecretRef{"p": tt.ref}}.resolveSecrets(t.Context())
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "channel mail: secret p") {
				t.Fatalf("got %v, want an error naming the channel, the secret and %q", err, tt.want)
			}
		})
	}
}

func TestConfigRoundTripIsPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.toml")
	c := &Config{Name: "alice", Channels: []ChannelConfig{{Name: "f", Adapter: "dir", Config: map[string]any{"path": "/x"}}}}
	if err := saveConfig(path, c); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config mode %v, err %v; want 0600", fi.Mode().Perm(), err)
	}
	got, err := loadConfig(path, []string{"dir"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "alice" || len(got.Channels) != 1 || got.Channels[0].Config["path"] != "/x" {
		t.Fatalf("round trip: %+v", got)
	}
}

// TestOldMDNSKey: a config from before [lan] keeps loading; mdns = true
// (libp2p's mDNS everywhere) becomes [lan] mdns = "on", mdns = false (the
// old default) the new default, and a save drops the old key.
func TestOldMDNSKey(t *testing.T) {
	for _, tt := range []struct {
		old  string
		want lan.Mode
	}{{"true", lan.On}, {"false", lan.Auto}} {
		path := filepath.Join(t.TempDir(), "config.toml")
		if err := os.WriteFile(path, []byte("name = \"a\"\nmdns = "+tt.old+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := loadConfig(path, builtinNames())
		if err != nil {
			t.Fatal(err)
		}
		p, err := c.LAN.policy()
		if err != nil || p.Mode != tt.want {
			t.Fatalf("mdns = %s: mode %q (%v), want %q", tt.old, p.Mode, err, tt.want)
		}
		if err := saveConfig(path, c); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), "\nmdns = "+tt.old) {
			t.Fatalf("the old key was saved again:\n%s", b)
		}
	}
}

// TestRelayConsent: relay is "ask" until the user answers; the opt-out key
// of earlier versions reads as consent refused (true) or not given (false),
// and a value that is none of the three is refused by name.
func TestRelayConsent(t *testing.T) {
	for _, tt := range []struct {
		line, want, err string
	}{
		{"", RelayAsk, ""},
		{"relay = \"yes\"", RelayYes, ""},
		{"relay = \"no\"", RelayNo, ""},
		{"relay = \"ask\"", RelayAsk, ""},
		{"no_relay = true", RelayNo, ""},
		{"no_relay = false", RelayAsk, ""},
		{"relay = \"maybe\"", "", `relay: "maybe" is not one of "yes", "no" or "ask"`},
	} {
		path := filepath.Join(t.TempDir(), "config.toml")
		if err := os.WriteFile(path, []byte("name = \"a\"\n"+tt.line+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := loadConfig(path, builtinNames())
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: error %v, want one saying %q", tt.line, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tt.line, err)
		}
		if c.Relay != tt.want {
			t.Errorf("%s: relay %q, want %q", tt.line, c.Relay, tt.want)
		}
		if err := saveConfig(path, c); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(path); strings.Contains(string(b), "\nno_relay") {
			t.Errorf("%s: the old key was saved again:\n%s", tt.line, b)
		}
	}
}
