package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/core/circle"
	"github.com/remora-p2p/remora/core/envelope"
	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/testenv"
)

// boardRecorder passes board writes through and remembers their keys.
type boardRecorder struct {
	sdk.Channel
	mu   sync.Mutex
	keys []string
}

func (r *boardRecorder) Put(ctx context.Context, req sdk.PutRequest) error {
	r.mu.Lock()
	r.keys = append(r.keys, req.Key)
	r.mu.Unlock()
	return r.Channel.(sdk.Board).Put(ctx, req)
}

func (r *boardRecorder) Get(ctx context.Context, req sdk.GetRequest) (sdk.GetResponse, error) {
	return r.Channel.(sdk.Board).Get(ctx, req)
}

// reset forgets what was written so far.
func (r *boardRecorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys = nil
}

func (r *boardRecorder) written() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.keys...)
}

// TestPresenceBoardKeysUnlinkable: a member's presence goes to the board
// under a key that is not the same for the whole epoch (a slot dealt
// afresh each window), the board holds one key per member, and another
// member still finds and opens the record there.
func TestPresenceBoardKeysUnlinkable(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p nodes")
	}
	var recorders []*boardRecorder
	var offset atomic.Int64 // alice's clock, in windows back
	tune := func(o *Options) {
		if o.Name == "alice" {
			o.Now = func() time.Time { return time.Now().Add(-time.Duration(offset.Load()) * circle.PresenceSlotWindow) }
		}
	}
	wrap := func(ch sdk.Channel) sdk.Channel {
		r := &boardRecorder{Channel: ch}
		recorders = append(recorders, r)
		return r
	}
	nodes := startDirNodesWith(t, t.TempDir(), 0, wrap, tune, "alice", "bob", "carol")
	a, b, c := nodes[0], nodes[1], nodes[2]
	rec := recorders[0]
	ctx := context.Background()
	ci, err := a.n.CreateCircle(ctx, api.CreateCircleRequest{Name: "boards"})
	if err != nil {
		t.Fatal(err)
	}
	join(t, a, b, ci.ID)
	join(t, a, c, ci.ID)
	ac, _ := a.n.circleOf(mustParse(t, ci.ID))
	secrets, _ := ac.EpochSecrets()
	perMember := secrets[0].BoardKey("presence/" + a.n.ID().String())

	// bob reads the board and opens alice's record from it, once he holds
	// her sender key and all three agree on the roster (a member that has
	// not seen carol's addition ranks among two, and may share a slot).
	bc, _ := b.n.circleOf(ac.ID())
	testenv.WaitFor(t, "bob holds alice's sender key and sees three members", 60*time.Second, func() bool {
		_, ok := keys{b.n}.MessageKeys(ac.ID().EnvelopeID(), envelope.Epoch(ac.Epoch()), a.n.ID())
		return ok && bc.Roster().Len() == 3 && bc.Epoch() == ac.Epoch()
	})
	cc, _ := c.n.circleOf(ac.ID())
	testenv.WaitFor(t, "carol sees three members", 60*time.Second, func() bool { return cc.Roster().Len() == 3 })
	opened := func() bool {
		a.n.publishPresence(ctx)
		key, _ := ac.PresenceBoardKey(a.n.opts.Now())
		resp, err := b.n.channels[0].Impl.(sdk.Board).Get(ctx, sdk.GetRequest{Keys: []string{key}})
		if err != nil || len(resp.Entries) != 1 {
			t.Fatalf("alice's slot %s on the board: %v, %v", key, resp.Entries, err)
		}
		for _, raw := range b.n.channels[0].decode(resp.Entries[0].Value) {
			msg, err := b.n.opener.Open(b.n.channels[0].ID, raw)
			if err == nil && msg.Sender == a.n.ID() && msg.Kind == envelope.KindPresence {
				return true
			}
		}
		return false // another member wrote the slot since (a window boundary between them)
	}
	testenv.WaitFor(t, "bob opens alice's presence from her board slot", 30*time.Second, opened)

	// Twelve windows: alice's key changes, and only the epoch's three
	// slot keys are ever written. What she wrote before (while carol was
	// joining: the epoch before, or a roster of two) does not count.
	epoch := ac.Epoch()
	rec.reset()
	for w := range 12 {
		offset.Store(int64(w + 1))
		a.n.publishPresence(ctx)
	}
	keys := map[string]int{}
	for _, k := range rec.written() {
		keys[k]++
	}
	if keys[perMember] > 0 {
		t.Errorf("alice wrote the per-member key %s, the same all epoch", perMember)
	}
	if len(keys) < 2 {
		t.Errorf("alice wrote her presence under %d key(s) over 13 windows: linkable across publications", len(keys))
	}
	if e := ac.Epoch(); e != epoch {
		t.Fatalf("the epoch changed during the windows (%d -> %d): nothing to check", epoch, e)
	}
	if len(keys) > 3 {
		t.Errorf("alice wrote %d board keys; the epoch has one slot per member (3)", len(keys))
	}
}

// boardReads passes board reads through and remembers the keys each one
// returned.
type boardReads struct {
	sdk.Channel
	mu   sync.Mutex
	gets [][]string // per Get, the keys of the entries returned
}

func (r *boardReads) Put(ctx context.Context, req sdk.PutRequest) error {
	return r.Channel.(sdk.Board).Put(ctx, req)
}

func (r *boardReads) Get(ctx context.Context, req sdk.GetRequest) (sdk.GetResponse, error) {
	resp, err := r.Channel.(sdk.Board).Get(ctx, req)
	var keys []string
	for _, e := range resp.Entries {
		keys = append(keys, e.Key)
	}
	r.mu.Lock()
	r.gets = append(r.gets, keys)
	r.mu.Unlock()
	return resp, err
}

func (r *boardReads) returned() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.gets)
}

// TestBoardJunkNotRead: entries others put on a channel's board (anyone
// with write access to the service can; issue #20's junk in a shared
// folder's board/) never cross into the node: it reads its circles'
// presence slots by key, not the whole board, so a board stuffed with junk
// costs nothing to read and cannot crowd a member's record out of the
// answer. Before, every poll listed the whole board and the adapter read
// and sent all of it.
func TestBoardJunkNotRead(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p nodes")
	}
	var reads []*boardReads // in the order the nodes open their channel
	nodes := startDirNodesWith(t, t.TempDir(), 0, func(ch sdk.Channel) sdk.Channel {
		r := &boardReads{Channel: ch}
		reads = append(reads, r)
		return r
	}, nil, "alice", "bob")
	a, b := nodes[0], nodes[1]
	bobReads := reads[1]
	ctx := context.Background()
	ci, err := a.n.CreateCircle(ctx, api.CreateCircleRequest{Name: "junk"})
	if err != nil {
		t.Fatal(err)
	}
	join(t, a, b, ci.ID)
	board := filepath.Join(a.shared, "board")
	if err := os.MkdirAll(board, 0o755); err != nil {
		t.Fatal(err)
	}
	junk := make([]byte, 4096)
	for i := range 50 {
		if err := os.WriteFile(filepath.Join(board, fmt.Sprintf("junk%02d", i)), junk, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ac, _ := a.n.circleOf(mustParse(t, ci.ID))
	testenv.WaitFor(t, "bob reads alice's presence slot from the board", 60*time.Second, func() bool {
		a.n.publishPresence(ctx)
		key, _ := ac.PresenceBoardKey(a.n.opts.Now())
		for _, g := range bobReads.returned() {
			if slices.Contains(g, key) {
				return true
			}
		}
		return false
	})
	for _, g := range bobReads.returned() {
		for _, k := range g {
			if strings.HasPrefix(k, "junk") {
				t.Fatalf("bob's board read returned the junk entry %s (and %d entries in all): the whole board was read", k, len(g))
			}
		}
	}
}
