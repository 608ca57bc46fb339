package circle

import (
	"bytes"
	"log/slog"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/remora-p2p/remora/core/envelope"
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
// direct envelopes, or a broadcast hand-out in one envelope to each member
// it names (each must be able to open it), and delivers the replies.
func deliver(t testing.TB, from *Circle, out []Outgoing, members map[string]*Circle) {
	t.Helper()
	for _, o := range out {
		m, err := ParseKeyMsg(o.Msg.Marshal())
		if err != nil {
			t.Fatal(err)
		}
		to := []peer.ID{o.To}
		if len(o.Broadcast) > 0 {
			to = o.Broadcast
			sk, err := from.HandOutKey(o.Epoch)
			if err != nil {
				t.Fatalf("%s seals a hand-out under %s: %v", from.Self(), o.Epoch, err)
			}
			for _, p := range to {
				if r, ok := members[string(p)]; ok && !opens(r, from.Self(), sk) {
					t.Fatalf("%s cannot open the hand-out %s broadcast under %s", p, from.Self(), o.Epoch)
				}
			}
		}
		for _, p := range to {
			r, ok := members[string(p)]
			if !ok {
				continue
			}
			replies, err := r.HandleKeyMsg(from.Self(), m)
			if err != nil {
				t.Fatalf("%s handles %v from %s: %v", r.Self(), m.Kind, from.Self(), err)
			}
			deliver(t, r, replies, members)
		}
	}
}

// opens reports whether c would open a broadcast envelope sender sealed
// with sk: whether sk is among the message keys c holds for sender in
// that epoch, as envelope's Open tries them.
func opens(c *Circle, sender peer.ID, sk SenderKey) bool {
	keys, _ := c.MessageKeys(c.ID().EnvelopeID(), envelope.Epoch(sk.Epoch), sender)
	for _, k := range keys {
		if bytes.Equal(k, sk.Key[:]) {
			return true
		}
	}
	return false
}

// join runs the whole invite flow from inviter to a new device.
func join(t testing.TB, c *clock, inviter *Circle, name string, members map[string]*Circle) *Circle {
	t.Helper()
	nc, sends := admit(t, c, inviter, name, members)
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

// admit runs the invite flow up to the new epoch: the new device is in
// members, every member has applied the add, and what each would send is
// returned, not delivered.
func admit(t testing.TB, c *clock, inviter *Circle, name string, members map[string]*Circle) (*Circle, map[*Circle][]Outgoing) {
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
	return nc, sends
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

// byPeer is the members map deliver and join take: each circle under its
// device's peer ID.
func byPeer(g []*Circle) map[string]*Circle {
	members := map[string]*Circle{}
	for _, m := range g {
		members[string(m.Self())] = m
	}
	return members
}
