// Package notify runs the user's notify hook: a command run once for each
// message that arrives while the daemon runs (e.g. notify-send), so a
// desktop or phone can show it without polling the API.
//
// The command gets only safe metadata in its environment — REMORA_CIRCLE
// (the circle's name), REMORA_SENDER (the sender's display name) and
// REMORA_MESSAGE_ID — plus REMORA_TEXT when the user asked for the text.
// Nothing else of the daemon's environment is passed on but a few variables
// a desktop notifier needs (PATH, HOME, locale, display and session bus),
// since the daemon's environment may hold channel secrets. The command is
// run directly, never through a shell, so a sender's name cannot inject
// anything; names are stripped of control characters.
package notify

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"
	"unicode"

	"github.com/remora-p2p/remora/core/api"
)

// Inbox is what the hook follows (the node, or an API client).
type Inbox interface {
	Status(ctx context.Context) (api.Status, error)
	Messages(ctx context.Context, after int64, limit int) ([]api.Message, error)
	WaitMessages(ctx context.Context, after int64) error
}

// Hook is the notify command.
type Hook struct {
	// Command is the program and its arguments.
	Command []string
	// Text passes the message text in REMORA_TEXT (off by default).
	Text bool
	// Timeout bounds one run (default 10 s).
	Timeout time.Duration
	Logger  *slog.Logger
}

// passed are the daemon's environment variables a notifier may need.
var passed = []string{"PATH", "HOME", "LANG", "LC_ALL", "LC_MESSAGES", "DISPLAY", "WAYLAND_DISPLAY", "XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS"}

// Env is the environment of the command for m.
func (h Hook) Env(m api.Message, circleName string) []string {
	var env []string
	for _, k := range passed {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	sender := m.FromName
	if sender == "" {
		sender = "a member"
	}
	env = append(env, "REMORA_CIRCLE="+clean(circleName, 64), "REMORA_SENDER="+clean(sender, 64), "REMORA_MESSAGE_ID="+m.ID)
	if h.Text {
		env = append(env, "REMORA_TEXT="+clean(m.Text, 4096))
	}
	return env
}

// clean drops control characters (and NUL, which an environment cannot
// hold) and cuts s to max runes.
func clean(s string, max int) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if unicode.IsControl(r) && r != '\n' || r == 0 {
			continue
		}
		if n++; n > max {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Run follows the inbox from its current end (what is there was there
// before the daemon started) and runs the command for each new message
// until ctx ends.
func (h Hook) Run(ctx context.Context, in Inbox) error {
	if len(h.Command) == 0 {
		return nil
	}
	after, err := End(ctx, in)
	if err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	return h.Follow(ctx, in, after)
}

// Follow runs the command for each message after sequence number after,
// until ctx ends. A failing command is logged, never retried.
func (h Hook) Follow(ctx context.Context, in Inbox, after int64) error {
	if len(h.Command) == 0 {
		return nil
	}
	if h.Timeout <= 0 {
		h.Timeout = 10 * time.Second
	}
	if h.Logger == nil {
		h.Logger = slog.Default()
	}
	for {
		if err := in.WaitMessages(ctx, after); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("notify: wait for messages: %w", err)
		}
		msgs, err := in.Messages(ctx, after, 100)
		if err != nil {
			return fmt.Errorf("notify: read messages: %w", err)
		}
		if len(msgs) == 0 {
			continue
		}
		names := circleNames(ctx, in)
		for _, m := range msgs {
			after = max(after, m.Seq)
			h.run(ctx, m, names[m.Circle])
		}
	}
}

// End is the sequence number of the newest message in the inbox.
func End(ctx context.Context, in Inbox) (int64, error) {
	var after int64
	for {
		msgs, err := in.Messages(ctx, after, 1000)
		if err != nil {
			return 0, fmt.Errorf("read the inbox: %w", err)
		}
		if len(msgs) == 0 {
			return after, nil
		}
		after = msgs[len(msgs)-1].Seq
	}
}

func circleNames(ctx context.Context, in Inbox) map[string]string {
	out := map[string]string{}
	if st, err := in.Status(ctx); err == nil {
		for _, c := range st.Circles {
			out[c.ID] = c.Name
		}
	}
	return out
}

func (h Hook) run(ctx context.Context, m api.Message, circleName string) {
	ctx, cancel := context.WithTimeout(ctx, h.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.Command[0], h.Command[1:]...)
	cmd.Env = h.Env(m, circleName)
	if out, err := cmd.CombinedOutput(); err != nil {
		h.Logger.Warn("notify command failed", "message", m.ID, "err", err, "output", clean(string(out), 200))
	}
}
