package circle

import (
	"log/slog"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/identity"
)

type clock struct{ t time.Time }

func (c *clock) Now() time.Time { return c.t }

var quiet = slog.New(slog.DiscardHandler)

func newKeyring(t testing.TB, c *clock) *identity.Keyring {
	t.Helper()
	k, err := identity.Create(t.TempDir(), identity.Options{Now: c.Now, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func opts(c *clock) Options { return Options{Now: c.Now, Logger: quiet} }

// deliver hands key messages to their recipients, as the node would in
// direct envelopes, and returns the replies.
func deliver(t testing.TB, from *Circle, out []Outgoing, members map[string]*Circle) {
	t.Helper()
	for _, o := range out {
		to, ok := members[string(o.To)]
		if !ok {
			continue
		}
		m, err := ParseKeyMsg(o.Msg.Marshal())
		if err != nil {
			t.Fatal(err)
		}
		replies, err := to.HandleKeyMsg(from.Self(), m)
		if err != nil {
			t.Fatalf("%s handles %v from %s: %v", to.Self(), m.Kind, from.Self(), err)
		}
		deliver(t, to, replies, members)
	}
}

// join runs the whole invite flow from inviter to a new device.
func join(t testing.TB, c *clock, inviter *Circle, name string, members map[string]*Circle) *Circle {
	t.Helper()
	inv, err := inviter.NewInvite("matrix:!room:example.org", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ParseInvite(inv.String())
	if err != nil {
		t.Fatal(err)
	}
	k := newKeyring(t, c)
	req, pending, err := RequestJoin(k, parsed, name, c.Now())
	if err != nil {
		t.Fatal(err)
	}
	jr, err := inviter.OpenJoin(req)
	if err != nil {
		t.Fatal(err)
	}
	if jr.Fingerprint(inviter.Self(), inv.BoxKey) != pending.Fingerprint() {
		t.Fatal("fingerprints differ")
	}
	jr = approve(t, inviter, jr)
	welcome, u, err := inviter.Welcome(jr)
	if err != nil {
		t.Fatal(err)
	}
	nc, nu, err := Join(k, pending, welcome, opts(c))
	if err != nil {
		t.Fatal(err)
	}
	members[string(nc.Self())] = nc
	sends := map[*Circle][]Outgoing{inviter: u.Send, nc: nu.Send}
	for _, m := range members {
		if m != inviter && m != nc {
			mu, err := m.ApplyOp(u.Op.Raw())
			if err != nil {
				t.Fatal(err)
			}
			sends[m] = mu.Send
		}
	}
	for m, out := range sends {
		deliver(t, m, out, members)
	}
	for _, m := range members {
		if r := m.Requests(); len(r) != 0 {
			t.Fatalf("%s still misses keys after the join: %+v", m.Self(), r)
		}
	}
	return nc
}

// approve holds an opened join request and approves it, as an admin would
// after comparing the safety code.
func approve(t testing.TB, inviter *Circle, jr *JoinRequest) *JoinRequest {
	t.Helper()
	ok, err := inviter.HoldJoin(jr)
	if err != nil {
		t.Fatal(err)
	}
	if ok {
		return jr
	}
	req, _, err := inviter.ApproveJoin(jr.Joiner)
	if err != nil {
		t.Fatal(err)
	}
	return req
}
