package node

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/core/circle"
)

func TestSplitFrame(t *testing.T) {
	frame := append([]byte{frameVersion, frameWelcome}, bytes.Repeat([]byte("welcome!"), 200)...)
	tests := []struct {
		name  string
		max   int
		parts int
	}{
		{"fits", 4096, 1},
		{"mastodon-sized", 368, 5},
		{"tiny", 40, 58},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parts, err := splitFrame(frame, tt.max)
			if err != nil {
				t.Fatal(err)
			}
			if len(parts) != tt.parts {
				t.Fatalf("%d parts, want %d", len(parts), tt.parts)
			}
			for _, p := range parts {
				if len(p) > tt.max || !isJoinFrame(p) {
					t.Fatalf("part of %d bytes (max %d), join frame %v", len(p), tt.max, isJoinFrame(p))
				}
			}
			if len(parts) == 1 {
				return
			}
			var j joinParts
			now := time.Now()
			var whole []byte
			// Reverse order, with a duplicate: completes exactly once.
			for i := len(parts) - 1; i >= 0; i-- {
				if got := j.add(parts[i], now); got != nil {
					whole = got
				}
				if i == len(parts)-1 && j.add(parts[i], now) != nil {
					t.Fatal("a duplicate part completed the frame")
				}
			}
			if !bytes.Equal(whole, frame) {
				t.Fatal("reassembled frame differs")
			}
		})
	}
	if _, err := splitFrame(bytes.Repeat([]byte{1}, 100000), 100); err == nil {
		t.Fatal("a frame needing more than 64 parts must be refused")
	}
	var j joinParts
	for _, bad := range [][]byte{{1, framePart}, append([]byte{1, framePart, 0, 0, 0, 0, 0, 0, 0, 0, 5, 2}, 'x'), append([]byte{1, framePart, 0, 0, 0, 0, 0, 0, 0, 0, 0, 200}, 'x')} {
		if j.add(bad, time.Now()) != nil {
			t.Fatalf("bad part %v completed a frame", bad)
		}
	}
}

// TestJoinOverSmallChannel: the welcome (the roster log, over a kilobyte)
// crosses a channel that carries at most 600 bytes per item.
func TestJoinOverSmallChannel(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p nodes")
	}
	nodes := startDirNodes(t, t.TempDir(), 600, nil, "alice", "bob")
	ci, err := nodes[0].n.CreateCircle(context.Background(), api.CreateCircleRequest{Name: "small"})
	if err != nil {
		t.Fatal(err)
	}
	join(t, nodes[0], nodes[1], ci.ID)
}

// TestReusedInviteRefused: a second device presenting an invite that was
// already used gets the inviter's refusal, not silence.
func TestReusedInviteRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p nodes")
	}
	nodes := startDirNodes(t, t.TempDir(), 0, nil, "alice", "bob", "carol")
	a, b, c := nodes[0], nodes[1], nodes[2]
	ctx := context.Background()
	ci, err := a.n.CreateCircle(ctx, api.CreateCircleRequest{Name: "once"})
	if err != nil {
		t.Fatal(err)
	}
	inv, err := a.n.Invite(ctx, api.InviteRequest{Circle: ci.ID})
	if err != nil {
		t.Fatal(err)
	}
	jctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := b.n.Join(jctx, api.JoinRequest{Invite: inv.Invite}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, _, err = c.n.JoinCircle(jctx, inv.Invite)
	if !errors.Is(err, circle.ErrInviteUsed) || !strings.Contains(err.Error(), "ask for a new one") {
		t.Fatalf("carol reusing bob's invite: %v, want the inviter's refusal (ErrInviteUsed)", err)
	}
	if jctx.Err() != nil {
		t.Fatalf("the refusal came only at the deadline (%s)", time.Since(start))
	}
	// Through the API it is a 400 with advice.
	_, err = c.n.Join(jctx, api.JoinRequest{Invite: inv.Invite})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != 400 || ae.Advice == "" || !strings.Contains(ae.Message, "already used") {
		t.Errorf("the API error: %#v", err)
	}
}
