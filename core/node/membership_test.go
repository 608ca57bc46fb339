package node

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/core/circle"
	"github.com/remora-p2p/remora/core/envelope"
	"github.com/remora-p2p/remora/core/identity"
	"github.com/remora-p2p/remora/core/presence"
	"github.com/remora-p2p/remora/testenv"
)

// TestApprovalGate: a join request waits as pending, durably on both sides:
// the inviter restarts, the joiner restarts, and nothing reaches the joiner
// until the admin approves; both show one safety code.
func TestApprovalGate(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p nodes")
	}
	nodes := startDirNodes(t, t.TempDir(), 0, nil, "alice", "bob")
	a, b := nodes[0], nodes[1]
	ctx := context.Background()
	ciID, _ := newCircle(t, "gate", a)
	inv, err := a.n.Invite(ctx, api.InviteRequest{Circle: ciID})
	if err != nil {
		t.Fatal(err)
	}
	st, err := b.n.Join(ctx, api.JoinRequest{Invite: inv.Invite})
	if err != nil || st.State != "pending" || st.SafetyCode == "" {
		t.Fatalf("join: %+v, %v", st, err)
	}
	var pending []api.PendingJoin
	testenv.WaitFor(t, "alice holds bob's request", 30*time.Second, func() bool {
		pending, _ = a.n.Pending(ctx, "")
		return len(pending) == 1
	})
	// An app learns of it from the event stream.
	testenv.WaitFor(t, "a join_pending event naming bob and the safety code", 10*time.Second, func() bool {
		evs, _ := a.n.Events(ctx, 0)
		for _, e := range evs {
			if e.Kind == "join_pending" && e.Ref == b.n.ID().String() && strings.Contains(e.Message, st.SafetyCode) {
				return true
			}
		}
		return false
	})
	p := pending[0]
	if p.Name != "bob" || p.PeerID != b.n.ID().String() || p.SafetyCode != st.SafetyCode || p.Channel != "shared" || p.Circle != ciID {
		t.Fatalf("pending %+v; bob's safety code %s", p, st.SafetyCode)
	}
	// Approving an unknown name lists what is pending.
	_, err = a.n.Approve(ctx, api.MemberRequest{Who: "mallory"})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != 404 || !strings.Contains(ae.Message, "pending: bob") || !strings.Contains(ae.Message, st.SafetyCode) {
		t.Fatalf("approve an unknown name: %#v", err)
	}
	// Both daemons restart while the request waits.
	a.stop()
	a.start()
	b.stop()
	if got, _ := a.n.Pending(ctx, ""); len(got) != 1 || got[0].SafetyCode != st.SafetyCode {
		t.Fatalf("after alice's restart: %+v", got)
	}
	if c, _ := a.n.circleOf(mustParse(t, ciID)); c.Roster().Len() != 1 {
		t.Fatal("the roster changed before approval")
	}
	m, err := a.n.Approve(ctx, api.MemberRequest{Who: "bob"})
	if err != nil || m.Name != "bob" {
		t.Fatalf("approve: %+v, %v", m, err)
	}
	b.start()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err = b.n.JoinStatus(wctx, st.ID, 30*time.Second)
	if err != nil || st.State != "joined" || st.Circle == nil || st.Circle.ID != ciID {
		t.Fatalf("bob after approval and a restart: %+v, %v", st, err)
	}
	members, err := a.n.Members(ctx, ciID)
	if err != nil || len(members) != 2 {
		t.Fatalf("members: %+v, %v", members, err)
	}
	for _, m := range members {
		if m.Name == "bob" && (m.AddedByName != "alice" || m.Role != "member" || m.Added.IsZero()) {
			t.Fatalf("bob's entry: %+v", m)
		}
	}
	if got, _ := a.n.Pending(ctx, ""); len(got) != 0 {
		t.Fatalf("still pending after approval: %+v", got)
	}
}

// TestDenyTellsTheJoiner: deny reaches the joiner as a refusal, and the
// invite stays dead for it.
func TestDenyTellsTheJoiner(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p nodes")
	}
	nodes := startDirNodes(t, t.TempDir(), 0, nil, "alice", "bob")
	a, b := nodes[0], nodes[1]
	ctx := context.Background()
	ci, _ := a.n.CreateCircle(ctx, api.CreateCircleRequest{Name: "deny"})
	inv, _ := a.n.Invite(ctx, api.InviteRequest{Circle: ci.ID})
	st, err := b.n.Join(ctx, api.JoinRequest{Invite: inv.Invite})
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "alice holds bob's request", 30*time.Second, func() bool {
		p, _ := a.n.Pending(ctx, "")
		return len(p) == 1
	})
	if err := a.n.Deny(ctx, api.MemberRequest{Who: b.n.ID().String()}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err = b.n.JoinStatus(wctx, st.ID, 30*time.Second)
	if err != nil || st.State != "refused" || !strings.Contains(st.Error, "denied") {
		t.Fatalf("bob after the denial: %+v, %v", st, err)
	}
	// Asking again with the same invite: a stale invite says why.
	b.n.mu.Lock()
	delete(b.n.joins, st.ID)
	b.n.mu.Unlock()
	_, _, err = b.n.JoinCircle(wctx, inv.Invite)
	if !errors.Is(err, circle.ErrInviteDenied) {
		t.Fatalf("asking again after a denial: %v", err)
	}
}

// TestRemovalTakesEffectAtOnce: alice removes bob. His connections close,
// the gater refuses him, alice stops using him as a relay, his presence is
// dropped, his held fragments go, he is told and can no longer send, keeps
// what he had, and reads nothing sent afterwards; the last admin cannot
// leave.
func TestRemovalTakesEffectAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p nodes")
	}
	root := t.TempDir()
	nodes := startDirNodes(t, root, 0, nil, "alice", "bob", "carol")
	a, b, c := nodes[0], nodes[1], nodes[2]
	ctx := context.Background()
	ciID, id := newCircle(t, "friends", a, b, c)
	testenv.WaitFor(t, "alice and bob connected", 60*time.Second, func() bool { return a.n.tr.PathTo(b.n.ID()).Live() })
	if _, err := a.n.Send(ctx, api.SendRequest{Circle: ciID, Text: "before"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*testNode{b, c} {
		testenv.WaitFor(t, n.name+" got the message sent before", 30*time.Second, func() bool { return texts(inbox(t, n.n))["before"] == 1 })
	}
	// bob is alice's relay, and alice holds a fragment of an unfinished
	// message of his.
	if err := a.n.tr.AddRelay(peer.AddrInfo{ID: b.n.ID(), Addrs: a.n.tr.KnownAddrs(b.n.ID())}); err != nil {
		t.Fatal(err)
	}
	bc, _ := b.n.circleOf(id)
	big := &OutboxEntry{ID: envelope.MessageID{9}, Circle: id, Kind: envelope.KindChat, Body: bytes.Repeat([]byte("x"), 3000),
		Created: time.Now(), Expiry: time.Now().Add(time.Hour)}
	sealed, err := b.n.seal(bc, big, "", envelope.Route{Channel: a.n.channels[0].ID, MaxSize: 600})
	if err != nil || len(sealed.Envelopes) < 2 {
		t.Fatalf("fragments: %v", err)
	}
	if err := a.n.receive(ctx, a.n.channels[0].ID, sealed.Envelopes[0], "channel:shared", ""); err != nil {
		t.Fatal(err)
	}
	heldOf := func(p peer.ID) int {
		n, _ := a.db.CountHeld(fragmentSenderPrefix(p))
		return n
	}
	if heldOf(b.n.ID()) != 1 {
		t.Fatal("the fragment was not held")
	}

	// The last admin can neither leave nor be demoted while others remain.
	if err := a.n.Leave(ctx, api.MemberRequest{}); err == nil || !strings.Contains(err.Error(), "only admin") {
		t.Fatalf("the last admin leaving: %v", err)
	}
	if err := a.n.RemoveMember(ctx, api.MemberRequest{Who: "bob"}); err != nil {
		t.Fatal(err)
	}

	if a.n.isMember(b.n.ID()) || slices.Contains(a.n.tr.Relays(), b.n.ID()) {
		t.Fatal("bob still passes the gater or is still alice's relay")
	}
	testenv.WaitFor(t, "alice's connections to bob closed", 10*time.Second, func() bool { return !a.n.tr.PathTo(b.n.ID()).Live() })
	// Dropped by the removal itself (cutOff, TestCutOffDropsHeld) or by a
	// retry that ran meanwhile and found the sender no longer a member:
	// either may come first, so which one is not checked here.
	if n := heldOf(b.n.ID()); n != 0 {
		t.Fatalf("%d fragments of bob still held after his removal", n)
	}
	a.n.mu.Lock()
	pi := a.n.peers[b.n.ID()]
	kept := pi != nil && (pi.record != nil || pi.raw != nil)
	a.n.mu.Unlock()
	if kept {
		t.Fatal("alice keeps bob's presence record")
	}
	// ... and a fresh one of his is not accepted.
	rec, err := b.n.record()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := presence.Sign(rec.ForChannel(false), b.n.self.PrivateKey())
	if err != nil {
		t.Fatal(err)
	}
	refused := a.n.Counters()["dropped_presence_non_member"]
	a.n.acceptPresence(id.EnvelopeID(), raw, "test")
	a.n.mu.Lock()
	pi = a.n.peers[b.n.ID()]
	kept = pi != nil && pi.record != nil
	a.n.mu.Unlock()
	if kept || a.n.Counters()["dropped_presence_non_member"] != refused+1 {
		t.Fatal("alice accepted the removed device's presence record")
	}
	testenv.WaitFor(t, "bob told of his removal", 30*time.Second, func() bool {
		_, err := b.n.Send(ctx, api.SendRequest{Circle: ciID, Text: "am I still in?"})
		var ae *api.Error
		return errors.As(err, &ae) && strings.Contains(ae.Message, "no longer a member")
	})
	if _, err := b.n.tr.Connect(ctx, a.n.ID()); err == nil {
		t.Fatal("bob connected to alice after his removal")
	}
	testenv.WaitFor(t, "carol saw the removal", 30*time.Second, func() bool {
		cc, _ := c.n.circleOf(id)
		return !cc.Roster().IsMember(b.n.ID())
	})
	if _, err := a.n.Send(ctx, api.SendRequest{Circle: ciID, Text: "after, from alice"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.n.Send(ctx, api.SendRequest{Circle: ciID, Text: "after, from carol"}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "carol got alice's message", 30*time.Second, func() bool { return texts(inbox(t, c.n))["after, from alice"] == 1 })
	testenv.WaitFor(t, "alice got carol's message", 30*time.Second, func() bool { return texts(inbox(t, a.n))["after, from carol"] == 1 })
	// Wait until bob has read every item in the folder, then look.
	testenv.WaitFor(t, "bob read the whole folder", 30*time.Second, func() bool {
		return b.n.channels[0].received.Load() >= int64(countItems(t, filepath.Join(root, "shared", "log")))
	})
	got := texts(inbox(t, b.n))
	if got["after, from alice"] != 0 || got["after, from carol"] != 0 {
		t.Fatalf("the removed device read messages sent after its removal: %v", got)
	}
	if got["before"] != 1 {
		t.Fatalf("the removed device lost what it had: %v", got)
	}
}

func countItems(t *testing.T, dir string) int {
	n := 0
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasPrefix(d.Name(), ".") {
			n++
		}
		return nil
	})
	return n
}

// TestLeave: a member leaves; the others see it go (its own removal
// reaches them although it is no longer a member), and it can send no more.
func TestLeave(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p nodes")
	}
	nodes := startDirNodes(t, t.TempDir(), 0, nil, "alice", "bob", "carol")
	a, b, c := nodes[0], nodes[1], nodes[2]
	ctx := context.Background()
	ciID, id := newCircle(t, "friends", a, b, c)
	if err := b.n.Leave(ctx, api.MemberRequest{Circle: ciID}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*testNode{a, c} {
		testenv.WaitFor(t, n.name+" sees bob gone", 30*time.Second, func() bool {
			cc, _ := n.n.circleOf(id)
			return !cc.Roster().IsMember(b.n.ID())
		})
	}
	_, err := b.n.Send(ctx, api.SendRequest{Circle: ciID, Text: "still here?"})
	var ae *api.Error
	if !errors.As(err, &ae) || !strings.Contains(ae.Message, "no longer a member") {
		t.Fatalf("send after leaving: %v", err)
	}
}

// TestRemoveOneLostDevice: two devices share a display name; removing by
// the name is refused with both peer IDs, so one lost device is revoked by
// its own ID.
func TestRemoveOneLostDevice(t *testing.T) {
	k := func() *identity.Keyring {
		kr, err := identity.Create(t.TempDir(), identity.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return kr
	}
	c, _, err := circle.Create(k(), "friends", "alice", false, circle.Options{})
	if err != nil {
		t.Fatal(err)
	}
	phone, laptop := k(), k()
	for _, d := range []*identity.Keyring{phone, laptop} {
		if _, err := c.AddMember(d.Identity().PeerID(), d.Current(), "bob", circle.RoleMember); err != nil {
			t.Fatal(err)
		}
	}
	n := &Node{}
	_, err = n.findMember(c, "bob")
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != 409 || !strings.Contains(ae.Message, phone.Identity().PeerID().String()) ||
		!strings.Contains(ae.Message, laptop.Identity().PeerID().String()) {
		t.Fatalf("a name two devices share: %#v", err)
	}
	m, err := n.findMember(c, phone.Identity().PeerID().String())
	if err != nil || m.Peer != phone.Identity().PeerID() {
		t.Fatalf("by peer ID: %v, %v", m, err)
	}
	if _, err := c.RemoveMember(m.Peer); err != nil {
		t.Fatal(err)
	}
	if c.Roster().IsMember(phone.Identity().PeerID()) || !c.Roster().IsMember(laptop.Identity().PeerID()) {
		t.Fatal("removing one device did not leave the other")
	}
	_, err = n.findMember(c, "mallory")
	if !errors.As(err, &ae) || ae.Status != 404 || !strings.Contains(ae.Message, "members: ") {
		t.Fatalf("an unknown member: %#v", err)
	}
}

// TestPendingExpiryTellsTheJoiner: a request nobody approves expires, and
// the joiner hears that its invite expired instead of waiting on.
func TestPendingExpiryTellsTheJoiner(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p nodes")
	}
	root := t.TempDir()
	shared := filepath.Join(root, "shared")
	if err := os.MkdirAll(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	var skew atomic.Int64 // alice's clock runs ahead by this much
	a := &testNode{t: t, name: "alice", state: filepath.Join(root, "alice"), shared: shared,
		tune: func(o *Options) { o.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) } }}
	b := &testNode{t: t, name: "bob", state: filepath.Join(root, "bob"), shared: shared}
	for _, n := range []*testNode{a, b} {
		n.start()
		t.Cleanup(n.stop)
	}
	ctx := context.Background()
	ci, _ := a.n.CreateCircle(ctx, api.CreateCircleRequest{Name: "slow"})
	inv, _ := a.n.Invite(ctx, api.InviteRequest{Circle: ci.ID})
	st, err := b.n.Join(ctx, api.JoinRequest{Invite: inv.Invite})
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "alice holds bob's request", 30*time.Second, func() bool {
		p, _ := a.n.Pending(ctx, "")
		return len(p) == 1
	})
	a.n.expirePending()
	if p, _ := a.n.Pending(ctx, ""); len(p) != 1 {
		t.Fatal("a fresh request expired")
	}
	skew.Store(int64(circle.PendingTTL + time.Minute))
	a.n.expirePending()
	if p, _ := a.n.Pending(ctx, ""); len(p) != 0 {
		t.Fatalf("still pending after %s: %+v", circle.PendingTTL, p)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err = b.n.JoinStatus(wctx, st.ID, 30*time.Second)
	if err != nil || st.State != "refused" || !strings.Contains(st.Error, "expired") {
		t.Fatalf("bob after the expiry: %+v, %v", st, err)
	}
}
