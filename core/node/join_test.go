package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
				if got, _ := j.add(parts[i], "src", now); got != nil {
					whole = got
				}
				if got, _ := j.add(parts[i], "src", now); i == len(parts)-1 && got != nil {
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
		if got, _ := j.add(bad, "src", time.Now()); got != nil {
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
	inv, err := a.n.Invite(ctx, api.InviteRequest{Circle: ci.ID, InPerson: true})
	if err != nil {
		t.Fatal(err)
	}
	jctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, _, err := b.n.JoinCircle(jctx, inv.Invite); err != nil {
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
	// Through the API the join ends refused, with the reason.
	st, err := c.n.Join(jctx, api.JoinRequest{Invite: inv.Invite})
	if err != nil {
		t.Fatal(err)
	}
	if st.State == "pending" {
		st, err = c.n.JoinStatus(jctx, st.ID, 20*time.Second)
	}
	if err != nil || st.State != "refused" || !strings.Contains(st.Error, "already used") {
		t.Errorf("the API's join status: %+v, %v", st, err)
	}
}

// TestJoinPartsFloodEvictsOldest: junk parts filling every pending slot do
// not block a real join's parts.
func TestJoinPartsFloodEvictsOldest(t *testing.T) {
	var j joinParts
	now := time.Now()
	for i := range maxPending * 3 {
		junk := []byte{frameVersion, framePart, byte(i), byte(i >> 8), 0, 0, 0, 0, 0, 0, 0, 2, 'x'}
		j.add(junk, "junk", now.Add(time.Duration(i)*time.Millisecond))
	}
	if len(j.pending) != maxPending {
		t.Fatalf("%d frames pending, want the bound %d", len(j.pending), maxPending)
	}
	frame := bytes.Repeat([]byte{frameVersion, frameWelcome, 7}, 100)
	parts, err := splitFrame(frame, 120)
	if err != nil {
		t.Fatal(err)
	}
	var whole []byte
	for _, p := range parts {
		if got, _ := j.add(p, "joiner", now.Add(time.Second)); got != nil {
			whole = got
		}
	}
	if !bytes.Equal(whole, frame) {
		t.Fatal("a join split into parts did not complete behind a flood of junk parts")
	}
}

// TestJoinPartsByteBudget: join parts are held within byte bounds, not
// item counts. Junk parts of 500 KB (32 frames of 63 parts: 31.5 MiB
// before) leave at most maxPartsBytes held, at most maxSourceBytes from one
// source; a 1 MiB part is refused outright; a real join split into parts
// still completes behind the flood, from its own source or the same one.
func TestJoinPartsByteBudget(t *testing.T) {
	var j joinParts
	now := time.Now()
	junk := func(frame, idx int, size int) []byte {
		p := []byte{frameVersion, framePart, byte(frame), byte(frame >> 8), 0xee, 0, 0, 0, 0, 0, byte(idx), 64}
		return append(p, bytes.Repeat([]byte{'j'}, size)...)
	}
	check := func(when string) {
		t.Helper()
		held := 0
		for _, p := range j.pending {
			for _, part := range p.parts {
				held += len(part)
			}
		}
		if held != j.held("") || held > maxPartsBytes {
			t.Fatalf("%s: %d bytes held (counted %d), bound %d", when, held, j.held(""), maxPartsBytes)
		}
		for src, b := range j.bySource() {
			if b > maxSourceBytes {
				t.Fatalf("%s: source %s holds %d bytes, bound %d", when, src, b, maxSourceBytes)
			}
		}
	}
	if _, why := j.add(junk(0, 0, 1<<20), "junk", now); why != partTooLarge || j.held("") != 0 {
		t.Fatalf("a 1 MiB part: %q, %d bytes held; want refused", why, j.held(""))
	}
	evicted := false
	for f := range 32 {
		for i := range 63 {
			src := fmt.Sprintf("junk%d", f%8) // eight posting accounts
			_, why := j.add(junk(f, i, maxPartBytes), src, now.Add(time.Duration(f*64+i)*time.Millisecond))
			evicted = evicted || why == partsEvicted
		}
	}
	check("after 31.5 MiB of junk")
	if !evicted {
		t.Error("a flood over the bounds reported no eviction")
	}
	frame := append([]byte{frameVersion, frameWelcome}, bytes.Repeat([]byte("welcome!"), 20000)...) // 160 KB
	parts, err := splitFrame(frame, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		if len(p) > partHeader+maxPartBytes {
			t.Fatalf("splitFrame made a part of %d bytes, receivers keep %d", len(p), partHeader+maxPartBytes)
		}
	}
	for _, src := range []string{"joiner", "junk3"} {
		var whole []byte
		for i, p := range parts {
			// Junk keeps coming from another source between the parts.
			j.add(junk(1000+i, 0, maxPartBytes), "junk5", now.Add(2*time.Second))
			if got, _ := j.add(p, src, now.Add(time.Second)); got != nil {
				whole = got
			}
			check("during the join")
		}
		if !bytes.Equal(whole, frame) {
			t.Fatalf("a join split into %d parts from %s did not complete behind the flood", len(parts), src)
		}
	}
}

// bySource is what each source holds, summed from its parts.
func (j *joinParts) bySource() map[string]int {
	out := map[string]int{}
	for _, p := range j.pending {
		for _, part := range p.parts {
			out[p.source] += len(part)
		}
	}
	return out
}

// FuzzJoinParts feeds arbitrary parts (split by 0xff bytes) to the
// reassembler: it must not panic, must stay within its bounds, and may
// only return what its parts carried.
func FuzzJoinParts(f *testing.F) {
	parts, _ := splitFrame(bytes.Repeat([]byte{frameVersion, frameWelcome}, 200), 100)
	f.Add(bytes.Join(parts, []byte{0xff}))
	f.Add([]byte{frameVersion, framePart, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 'a', 0xff, frameVersion, framePart, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 'b'})
	f.Fuzz(func(t *testing.T, data []byte) {
		var j joinParts
		now := time.Now()
		total := 0
		for i, p := range bytes.Split(data, []byte{0xff}) {
			total += len(p)
			if whole, _ := j.add(p, string(rune('a'+i%3)), now.Add(time.Duration(i)*time.Minute)); len(whole) > total {
				t.Fatalf("reassembled %d bytes from %d bytes of input", len(whole), total)
			}
			if len(j.pending) > maxPending || j.held("") > maxPartsBytes {
				t.Fatalf("%d frames, %d bytes pending, bounds %d, %d", len(j.pending), j.held(""), maxPending, maxPartsBytes)
			}
			for src, b := range j.bySource() {
				if b > maxSourceBytes || b <= 0 {
					t.Fatalf("source %s holds %d bytes, bound %d", src, b, maxSourceBytes)
				}
			}
		}
	})
}

// FuzzDecodeAck: a malformed ack is an error, never a panic, and a valid
// one has exactly the IDs its length says.
func FuzzDecodeAck(f *testing.F) {
	f.Add([]byte{1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	f.Add([]byte{0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		ids, err := decodeAck(b)
		if err != nil {
			return
		}
		if len(ids)*16 >= len(b) {
			t.Fatalf("%d IDs from %d bytes", len(ids), len(b))
		}
	})
}
