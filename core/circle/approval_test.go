package circle

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func newAdmin(t *testing.T) (*clock, *Circle) {
	t.Helper()
	c := &clock{time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	a, _, err := Create(newKeyring(t, c), "friends", "alice", false, opts(c))
	if err != nil {
		t.Fatal(err)
	}
	return c, a
}

// TestReplayedJoinNeverReadmits: bob joins, is removed, and his original join
// request is replayed (by him or by anyone who kept the bytes, such as the
// service that carried it). It must not bring him back. Before the fix the
// used invite skipped every check for its own joiner and Welcome signed a new
// add.
func TestReplayedJoinNeverReadmits(t *testing.T) {
	c, a := newAdmin(t)
	inv, err := a.NewInvite("dir:/srv/remora", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kb := newKeyring(t, c)
	req, pending, err := RequestJoin(kb, inv, "bob", c.t)
	if err != nil {
		t.Fatal(err)
	}
	jr, err := a.OpenJoin(req)
	if err != nil {
		t.Fatal(err)
	}
	w, _, err := a.Welcome(approve(t, a, jr))
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := Join(kb, pending, w, opts(c))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.RemoveMember(b.Self()); err != nil {
		t.Fatal(err)
	}
	for _, at := range []time.Duration{time.Minute, 30 * time.Minute, 3 * time.Hour, 10 * 24 * time.Hour} {
		c.t = c.t.Add(at)
		jr, err := a.OpenJoin(req)
		if !errors.Is(err, ErrInviteUsed) {
			t.Errorf("replay %s later: %v, want ErrInviteUsed", at, err)
		}
		if err == nil {
			a.Welcome(jr)
		}
		if a.Roster().IsMember(b.Self()) {
			t.Fatalf("a replayed join request readmitted the removed device (%s later)", at)
		}
	}
}

// TestJoinRequestBoundToItsTime: a request dated outside its invite's
// lifetime, or ahead of the inviter's clock, is not accepted.
func TestJoinRequestBoundToItsTime(t *testing.T) {
	c, a := newAdmin(t)
	inv, _ := a.NewInvite("", time.Hour)
	for _, tt := range []struct {
		name string
		at   time.Time
	}{
		{"before the invite existed", c.t.Add(-time.Hour)},
		{"after it expired", inv.Expires.Add(time.Hour)},
	} {
		req, _, err := requestJoinAt(t, c, inv, tt.at)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.OpenJoin(req); !errors.Is(err, ErrInviteInvalid) {
			t.Errorf("%s: %v, want ErrInviteInvalid", tt.name, err)
		}
	}
}

// requestJoinAt builds a request as a joiner whose clock says at would.
func requestJoinAt(t *testing.T, c *clock, inv Invite, at time.Time) ([]byte, *PendingJoin, error) {
	t.Helper()
	saved := c.t
	defer func() { c.t = saved }()
	c.t = at
	k := newKeyring(t, c)
	// RequestJoin refuses an expired invite at the joiner: forge its
	// expiry there (the inviter checks against its own record).
	inv.Expires = at.Add(time.Hour)
	return RequestJoin(k, inv, "eve", at)
}

// TestApprovalGate: a request waits, nothing is sent before approval, the
// pending request survives a restart, and both sides show one safety code.
func TestApprovalGate(t *testing.T) {
	c, a := newAdmin(t)
	inv, _ := a.NewInvite("dir:/srv/remora", time.Hour)
	kb := newKeyring(t, c)
	req, pending, _ := RequestJoin(kb, inv, "bob", c.t)
	jr, err := a.OpenJoin(req)
	if err != nil {
		t.Fatal(err)
	}
	jr.Channel = "folder"
	approved, err := a.HoldJoin(jr)
	if err != nil || approved {
		t.Fatalf("HoldJoin: approved %v, %v; want it pending", approved, err)
	}
	if _, _, err := a.Welcome(jr); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("welcome before approval: %v", err)
	}
	if a.Roster().Len() != 1 {
		t.Fatal("a pending request changed the roster")
	}
	// Asking again while waiting does not add a second entry.
	if jr2, err := a.OpenJoin(req); err != nil {
		t.Fatal(err)
	} else if _, err := a.HoldJoin(jr2); err != nil {
		t.Fatal(err)
	}
	c.t = c.t.Add(10 * time.Minute)
	st, err := a.State()
	if err != nil {
		t.Fatal(err)
	}
	a2, err := Load(a.keys, a.Ops(), st, opts(c))
	if err != nil {
		t.Fatal(err)
	}
	list := a2.PendingJoins()
	if len(list) != 1 {
		t.Fatalf("after a restart %d pending requests, want 1", len(list))
	}
	p := list[0]
	if p.Name != "bob" || p.Joiner != kb.Identity().PeerID() || p.Channel != "folder" || p.SafetyCode != pending.Fingerprint() ||
		!p.Expires.Equal(p.Since.Add(PendingTTL)) || len(strings.ReplaceAll(p.SafetyCode, " ", "")) != 12 {
		t.Fatalf("pending request %+v; joiner's safety code %s", p, pending.Fingerprint())
	}
	ok, others, err := a2.ApproveJoin(p.Joiner)
	if err != nil || len(others) != 0 {
		t.Fatal(err, others)
	}
	w, _, err := a2.Welcome(ok)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := Join(kb, pending, w, opts(c))
	if err != nil || !b.Roster().IsMember(b.Self()) {
		t.Fatalf("join after approval: %v", err)
	}
	if len(a2.PendingJoins()) != 0 {
		t.Fatal("the approved request is still pending")
	}
}

// TestDenyIsFinal: deny refuses every request on the invite, now and later,
// and the joiner can read why.
func TestDenyIsFinal(t *testing.T) {
	c, a := newAdmin(t)
	inv, _ := a.NewInvite("", time.Hour)
	reqB, bobJoin, _ := RequestJoin(newKeyring(t, c), inv, "bob", c.t)
	reqE, _, _ := RequestJoin(newKeyring(t, c), inv, "bob", c.t) // someone who read the invite too
	for _, r := range [][]byte{reqB, reqE} {
		jr, err := a.OpenJoin(r)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := a.HoldJoin(jr); ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	if n := len(a.PendingJoins()); n != 2 {
		t.Fatalf("%d pending, want both requests", n)
	}
	refused, err := a.DenyJoin(bobJoin.Self())
	if err != nil || len(refused) != 2 {
		t.Fatalf("deny: %v, %d refused; want both requests on the invite", err, len(refused))
	}
	for _, r := range refused {
		if r.Joiner == bobJoin.Self() {
			blob, err := Refuse(r, ErrInviteDenied)
			if err != nil {
				t.Fatal(err)
			}
			if got := bobJoin.Refused(blob); !errors.Is(got, ErrInviteDenied) || !strings.Contains(got.Error(), "denied") {
				t.Fatalf("the joiner reads %v", got)
			}
		}
	}
	if _, err := a.OpenJoin(reqB); !errors.Is(err, ErrInviteDenied) {
		t.Fatalf("a request after the denial: %v", err)
	}
	if _, _, err := a.ApproveJoin(bobJoin.Self()); !errors.Is(err, ErrNoPending) {
		t.Fatalf("approve after deny: %v", err)
	}
}

func TestPendingExpires(t *testing.T) {
	c, a := newAdmin(t)
	inv, _ := a.NewInvite("", time.Hour)
	req, _, _ := RequestJoin(newKeyring(t, c), inv, "bob", c.t)
	jr, _ := a.OpenJoin(req)
	a.HoldJoin(jr)
	c.t = c.t.Add(PendingTTL - time.Minute)
	if got := a.ExpirePending(); len(got) != 0 {
		t.Fatalf("expired early: %v", got)
	}
	c.t = c.t.Add(2 * time.Minute)
	if len(a.PendingJoins()) != 0 {
		t.Fatal("an expired request is listed")
	}
	if _, _, err := a.ApproveJoin(jr.Joiner); !errors.Is(err, ErrNoPending) {
		t.Fatalf("approve an expired request: %v", err)
	}
	got := a.ExpirePending()
	if len(got) != 1 || got[0].Joiner != jr.Joiner {
		t.Fatalf("ExpirePending returned %v", got)
	}
	if _, err := Refuse(got[0], ErrInviteExpired); err != nil {
		t.Fatal(err)
	}
	if _, err := a.OpenJoin(req); !errors.Is(err, ErrInviteExpired) {
		t.Fatalf("asking again after expiry: %v", err)
	}
}

func TestInPersonInvite(t *testing.T) {
	c, a := newAdmin(t)
	inv, err := a.Invite(InviteOptions{TTL: time.Hour, InPerson: true})
	if err != nil {
		t.Fatal(err)
	}
	kb := newKeyring(t, c)
	req, pending, _ := RequestJoin(kb, inv, "bob", c.t)
	jr, _ := a.OpenJoin(req)
	if ok, err := a.HoldJoin(jr); !ok || err != nil {
		t.Fatalf("in-person invite: approved %v, %v", ok, err)
	}
	w, _, err := a.Welcome(jr)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Join(kb, pending, w, opts(c)); err != nil {
		t.Fatal(err)
	}
	// Its single use is spent.
	req2, _, _ := RequestJoin(newKeyring(t, c), inv, "eve", c.t)
	if _, err := a.OpenJoin(req2); !errors.Is(err, ErrInviteUsed) {
		t.Fatalf("second use of an in-person invite: %v", err)
	}
}

func TestLastAdminKept(t *testing.T) {
	c, a := newAdmin(t)
	members := map[string]*Circle{string(a.Self()): a}
	b := join(t, c, a, "bob", members)
	for name, f := range map[string]func() error{
		"leave":  func() error { _, err := a.RemoveMember(a.Self()); return err },
		"demote": func() error { _, err := a.SetRole(a.Self(), RoleMember); return err },
	} {
		if err := f(); !errors.Is(err, ErrLastAdmin) || !strings.Contains(err.Error(), "alice is its only admin") {
			t.Errorf("%s the only admin: %v", name, err)
		}
	}
	if _, err := a.SetRole(b.Self(), RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if _, err := a.RemoveMember(a.Self()); err != nil {
		t.Fatalf("leave with another admin: %v", err)
	}
	// The last member may always leave.
	_, solo := newAdmin(t)
	if _, err := solo.RemoveMember(solo.Self()); err != nil {
		t.Fatalf("the only member leaving: %v", err)
	}
}

// TestRemovedAdminsInvitesVoid: an admin's invites die with its admin role.
// Its own device refuses requests on them, and an addition it signs without
// having seen its removal is void for everyone who has.
func TestRemovedAdminsInvitesVoid(t *testing.T) {
	c, a := newAdmin(t)
	members := map[string]*Circle{string(a.Self()): a}
	b := join(t, c, a, "bob", members)
	if _, err := a.SetRole(b.Self(), RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ApplyOp(a.Ops()[len(a.Ops())-1]); err != nil {
		t.Fatal(err)
	}
	inv, err := b.NewInvite("", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// A fork of bob's device that never hears of the removal.
	st, _ := b.State()
	stale, err := Load(b.keys, b.Ops(), st, opts(c))
	if err != nil {
		t.Fatal(err)
	}
	u, err := a.RemoveMember(b.Self())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.ApplyOp(u.Op.Raw()); err != nil {
		t.Fatal(err)
	}
	kc := newKeyring(t, c)
	req, _, _ := RequestJoin(kc, inv, "carol", c.t)
	if _, err := b.OpenJoin(req); !errors.Is(err, ErrInviteVoid) {
		t.Fatalf("request on a removed admin's invite: %v", err)
	}
	jr, err := stale.OpenJoin(req)
	if err != nil {
		t.Fatal(err)
	}
	jr = approve(t, stale, jr)
	if _, su, err := stale.Welcome(jr); err != nil {
		t.Fatal(err)
	} else if _, err := a.ApplyOp(su.Op.Raw()); err != nil {
		t.Fatal(err)
	}
	if a.Roster().IsMember(kc.Identity().PeerID()) {
		t.Fatal("an addition signed by a removed admin counts")
	}
}

// TestJoinNameControlCharacters: the name an admin reads before approving
// carries no terminal escapes or line breaks.
func TestJoinNameControlCharacters(t *testing.T) {
	c, a := newAdmin(t)
	inv, _ := a.NewInvite("", time.Hour)
	for _, name := range []string{"bob\x1b[2Jalice", "bob\nalice", "bob\x00"} {
		if _, _, err := RequestJoin(newKeyring(t, c), inv, name, c.t); err == nil {
			t.Errorf("name %q accepted", name)
		}
	}
}
