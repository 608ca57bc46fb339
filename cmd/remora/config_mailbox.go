package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/remora-p2p/remora/core/mailbox"
	"github.com/remora-p2p/remora/core/node"
	"github.com/remora-p2p/remora/core/notify"
)

// MailboxConfig is the [mailbox] table: envelopes this device keeps for
// friends who are offline (core/mailbox).
type MailboxConfig struct {
	// Enabled keeps envelopes for friends (default: on unless the user
	// refused to relay, relay = "no").
	Enabled *bool `toml:"enabled,omitempty"`
	// Quota is the space given to friends ("32MiB", the default).
	Quota string `toml:"quota,omitempty"`
	// Expiry is the longest an envelope is kept ("168h", the default).
	Expiry string `toml:"expiry,omitempty"`
	// Copies is how many friends keep each of our envelopes for an
	// offline member (default 2).
	Copies int `toml:"copies,omitempty"`
}

// PushConfig is the [push] table: the notify hook and wake-ups.
type PushConfig struct {
	// Notify is a command (program and arguments, no shell) run for each
	// new message, e.g. ["notify-send", "remora", "new message"]. Its
	// environment holds REMORA_CIRCLE, REMORA_SENDER, REMORA_MESSAGE_ID.
	Notify []string `toml:"notify,omitempty"`
	// NotifyText adds the message text as REMORA_TEXT (default false).
	NotifyText bool `toml:"notify_text,omitempty"`
	// UnifiedPush is this device's UnifiedPush endpoint: friends that stay
	// online POST an empty wake-up there when a message for it arrives.
	UnifiedPush string `toml:"unifiedpush_endpoint,omitempty"`
	// WakeChannels asks friends for wake-ups over the circle's
	// push-capable channels (IMAP IDLE, Matrix, Mastodon streaming).
	WakeChannels bool `toml:"wake_channels,omitempty"`
	// WakeInterval is the least time between two wake-ups this device
	// sends one sleeping friend ("1m", the default).
	WakeInterval string `toml:"wake_interval,omitempty"`
}

var sizeRE = regexp.MustCompile(`^\s*([0-9]+)\s*(B|KiB|MiB|GiB|KB|MB|GB)?\s*$`)

// parseSize reads "32MiB", "500KB" or a plain number of bytes.
func parseSize(s string) (int64, error) {
	m := sizeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a size (e.g. \"32MiB\")", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", s, err)
	}
	mult := map[string]int64{"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "KB": 1e3, "MB": 1e6, "GB": 1e9}[m[2]]
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * mult, nil
}

func (c *Config) validateMailbox(bad func(field, format string, args ...any) error) error {
	dur := func(field, v string) error {
		if v == "" {
			return nil
		}
		if d, err := time.ParseDuration(v); err != nil || d <= 0 {
			return bad(field, "%q is not a positive duration (e.g. \"168h\")", v)
		}
		return nil
	}
	if m := c.Mailbox; m != nil {
		if m.Quota != "" {
			if _, err := parseSize(m.Quota); err != nil {
				return bad("mailbox.quota", "%v", err)
			}
		}
		if err := dur("mailbox.expiry", m.Expiry); err != nil {
			return err
		}
		if m.Copies < 0 || m.Copies > 8 {
			return bad("mailbox.copies", "give 1 to 8 (default 2)")
		}
	}
	if p := c.Push; p != nil {
		if len(p.Notify) > 0 && strings.TrimSpace(p.Notify[0]) == "" {
			return bad("push.notify", "the first element is the program to run")
		}
		if p.UnifiedPush != "" {
			if err := (mailbox.Registration{Endpoint: p.UnifiedPush}).Validate(); err != nil {
				return bad("push.unifiedpush_endpoint", "%v", err)
			}
		}
		if err := dur("push.wake_interval", p.WakeInterval); err != nil {
			return err
		}
	}
	return nil
}

// applyMailbox sets the node's mailbox options (validated already).
func (c *Config) applyMailbox(o *node.Options) {
	m := c.Mailbox
	if m == nil {
		m = &MailboxConfig{}
	}
	switch {
	case m.Enabled != nil && !*m.Enabled:
		o.Mailbox.Quota = -1
	case m.Quota != "":
		o.Mailbox.Quota, _ = parseSize(m.Quota)
	case m.Enabled != nil || c.Relay != RelayNo:
		// On by default unless the user refused to relay: a relay not
		// consented to yet ("ask") does not turn friends' mailboxes off.
		o.Mailbox.Quota = node.DefaultMailboxQuota
	}
	o.Mailbox.Expiry, _ = time.ParseDuration(m.Expiry)
	o.Mailbox.Copies = m.Copies
	if p := c.Push; p != nil {
		if p.UnifiedPush != "" || p.WakeChannels {
			o.Mailbox.Wake = &mailbox.Registration{Endpoint: p.UnifiedPush, Channels: p.WakeChannels}
		}
		o.Mailbox.WakeInterval, _ = time.ParseDuration(p.WakeInterval)
	}
}

// notifyHook is the [push] notify command, or nil.
func (c *Config) notifyHook() *notify.Hook {
	if c.Push == nil || len(c.Push.Notify) == 0 {
		return nil
	}
	return &notify.Hook{Command: c.Push.Notify, Text: c.Push.NotifyText}
}
