package notify

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/testenv"
)

// inbox is an in-memory Inbox; the node's own follows the same contract
// (WaitMessages returns once a message after the given sequence exists).
type inbox struct {
	mu     sync.Mutex
	msgs   []api.Message
	notify chan struct{}
}

func newInbox() *inbox { return &inbox{notify: make(chan struct{})} }

func (b *inbox) add(m api.Message) {
	b.mu.Lock()
	m.Seq = int64(len(b.msgs) + 1)
	b.msgs = append(b.msgs, m)
	close(b.notify)
	b.notify = make(chan struct{})
	b.mu.Unlock()
}

func (b *inbox) Status(context.Context) (api.Status, error) {
	return api.Status{Circles: []api.Circle{{ID: "c1", Name: "friends"}}}, nil
}

func (b *inbox) Messages(_ context.Context, after int64, limit int) ([]api.Message, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []api.Message
	for _, m := range b.msgs {
		if m.Seq > after && len(out) < limit {
			out = append(out, m)
		}
	}
	return out, nil
}

func (b *inbox) WaitMessages(ctx context.Context, after int64) error {
	for {
		b.mu.Lock()
		have, ch := int64(len(b.msgs)) > after, b.notify
		b.mu.Unlock()
		if have {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// TestNotifyHook: the command runs once per new message with the circle,
// sender name and message ID in its environment, the text only when asked
// for, and nothing of the daemon's own environment but what a notifier
// needs.
func TestNotifyHook(t *testing.T) {
	t.Setenv("REMORA_TEST_SECRET", "hunter2") // e.g. a channel password read from the environment
	for _, tc := range []struct {
		name string
		text bool
	}{{"metadata only", false}, {"with text", true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			in := newInbox()
			in.add(api.Message{ID: "old", Circle: "c1", FromName: "alice", Text: "before the daemon"})
			// Each run writes its environment to a file named by the message ID.
			h := Hook{Command: []string{"/bin/sh", "-c", `env > "$0/$REMORA_MESSAGE_ID"`, dir}, Text: tc.text}
			ctx, cancel := context.WithCancel(context.Background())
			after, err := End(ctx, in)
			if err != nil || after != 1 {
				t.Fatalf("End = %d, %v; want 1", after, err)
			}
			done := make(chan error, 1)
			go func() { done <- h.Follow(ctx, in, after) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Error(err)
				}
			}()
			in.add(api.Message{ID: "m1", Circle: "c1", FromName: "bob\x1b[31m", Text: "secret plans"})
			in.add(api.Message{ID: "m2", Circle: "c1", FromName: "carol", Text: "more"})
			testenv.WaitFor(t, "the hook run for both new messages", 20*time.Second, func() bool {
				_, e1 := os.Stat(filepath.Join(dir, "m1"))
				_, e2 := os.Stat(filepath.Join(dir, "m2"))
				return e1 == nil && e2 == nil
			})
			raw, err := os.ReadFile(filepath.Join(dir, "m1"))
			if err != nil {
				t.Fatal(err)
			}
			env := string(raw)
			for _, want := range []string{"REMORA_CIRCLE=friends\n", "REMORA_SENDER=bob[31m\n", "REMORA_MESSAGE_ID=m1\n"} {
				if !strings.Contains(env, want) {
					t.Errorf("environment lacks %q:\n%s", want, env)
				}
			}
			if strings.Contains(env, "hunter2") {
				t.Error("the daemon's secret reached the hook")
			}
			if got := strings.Contains(env, "secret plans"); got != tc.text {
				t.Errorf("text in the environment: %v, want %v", got, tc.text)
			}
			if _, err := os.Stat(filepath.Join(dir, "old")); err == nil {
				t.Error("the hook ran for a message from before it started")
			}
		})
	}
}
