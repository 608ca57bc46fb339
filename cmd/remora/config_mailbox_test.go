package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/core/node"
)

func TestMailboxConfig(t *testing.T) {
	write := func(t *testing.T, body string) string {
		p := filepath.Join(t.TempDir(), "config.toml")
		os.WriteFile(p, []byte("name = \"dev\"\n"+body), 0o600)
		return p
	}
	good := []struct {
		name, body string
		check      func(node.Options, *Config) bool
	}{
		// on by default while the relay question is unanswered
		{"defaults", "", func(o node.Options, c *Config) bool {
			return o.Mailbox.Quota == node.DefaultMailboxQuota && o.Mailbox.Wake == nil && c.notifyHook() == nil
		}},
		// off when the user refused to relay (the node decides: no relay, no mailbox)
		{"relay refused", "relay = \"no\"\n", func(o node.Options, _ *Config) bool { return o.Mailbox.Quota == 0 }},
		{"off", "[mailbox]\nenabled = false\n", func(o node.Options, _ *Config) bool { return o.Mailbox.Quota < 0 }},
		// asked for by name, it is on though the user refused to relay
		{"on, relay refused", "relay = \"no\"\n[mailbox]\nenabled = true\n", func(o node.Options, _ *Config) bool {
			return o.Mailbox.Quota == node.DefaultMailboxQuota
		}},
		{"quota and expiry", "[mailbox]\nquota = \"8MiB\"\nexpiry = \"48h\"\ncopies = 3\n", func(o node.Options, _ *Config) bool {
			return o.Mailbox.Quota == 8<<20 && o.Mailbox.Expiry == 48*time.Hour && o.Mailbox.Copies == 3
		}},
		{"push", "[push]\nnotify = [\"notify-send\", \"remora\"]\nunifiedpush_endpoint = \"https://push.example/up/x\"\nwake_channels = true\nwake_interval = \"5m\"\n", func(o node.Options, c *Config) bool {
			return o.Mailbox.Wake != nil && o.Mailbox.Wake.Channels && o.Mailbox.Wake.Endpoint == "https://push.example/up/x" &&
				o.Mailbox.WakeInterval == 5*time.Minute && c.notifyHook() != nil && !c.notifyHook().Text
		}},
	}
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadConfig(write(t, tc.body), nil)
			if err != nil {
				t.Fatal(err)
			}
			var o node.Options
			c.applyMailbox(&o)
			if !tc.check(o, c) {
				t.Fatalf("options %+v", o.Mailbox)
			}
		})
	}
	bad := []struct{ name, body, field, want string }{
		{"quota", "[mailbox]\nquota = \"lots\"\n", "mailbox.quota", "not a size"},
		{"expiry", "[mailbox]\nexpiry = \"-1h\"\n", "mailbox.expiry", "positive duration"},
		{"copies", "[mailbox]\ncopies = 99\n", "mailbox.copies", "1 to 8"},
		{"plain http endpoint", "[push]\nunifiedpush_endpoint = \"http://push.example/x\"\n", "push.unifiedpush_endpoint", "https://"},
		{"empty notify program", "[push]\nnotify = [\"\"]\n", "push.notify", "program"},
	}
	for _, tc := range bad {
		t.Run("bad "+tc.name, func(t *testing.T) {
			_, err := loadConfig(write(t, tc.body), nil)
			if err == nil || !strings.Contains(err.Error(), tc.field) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %s and saying %q", err, tc.field, tc.want)
			}
		})
	}
}

func TestDoctorMailbox(t *testing.T) {
	st := api.Status{
		Circles: []api.Circle{{Members: []api.Member{{PeerID: "12D3carol", Name: "carol"}}}},
		Mailbox: &api.Mailbox{Offered: true, Quota: 32 << 20, Expiry: "168h0m0s", HeldItems: 3, HeldBytes: 1536, HeldRecipients: 1,
			Holders: []api.MailboxHolder{{PeerID: "12D3carol", Items: 2, Bytes: 1024, Delivered: 5}}, WakeRegistered: 1, WakePushed: 4, WakeLimited: 2},
	}
	var b bytes.Buffer
	doctorMailbox(&b, st)
	out := b.String()
	for _, want := range []string{"keeps 3 envelope(s), 1.5 KiB of 32.0 MiB, for 1 member(s)", "carol keeps 2 of our envelope(s) (1.0 KiB)", "delivered 5", "1 sleeping device(s) registered; sent 4 push", "2 held back"} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor lacks %q:\n%s", want, out)
		}
	}
}
