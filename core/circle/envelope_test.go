package circle

import (
	"errors"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/envelope"
)

// TestEnvelopeRoundTrip seals with one member's circle state and opens with
// another's, through envelope's Keys interface.
func TestEnvelopeRoundTrip(t *testing.T) {
	c := &clock{time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	a, _, err := Create(newKeyring(t, c), "friends", "alice", false, opts(c))
	if err != nil {
		t.Fatal(err)
	}
	members := map[string]*Circle{string(a.Self()): a}
	b := join(t, c, a, "bob", members)
	set := NewSet(b.keys)
	set.Put(b)
	opener := envelope.NewOpener(set, b.Self(), envelope.OpenOptions{Now: c.Now})
	sealer := &envelope.Sealer{Now: c.Now}
	route := envelope.Route{Channel: "dir:test", MaxSize: 4096}

	ek, err := a.SendEpochKeys()
	if err != nil {
		t.Fatal(err)
	}
	sk, err := a.SendKey()
	if err != nil {
		t.Fatal(err)
	}
	draft := envelope.Draft{Kind: envelope.KindChat, Expiry: c.t.Add(time.Hour), Body: []byte("hi bob")}
	s, err := sealer.Broadcast(ek, Signer(a.keys.Identity()), sk.Key[:], draft, route)
	if err != nil {
		t.Fatal(err)
	}
	m, err := opener.Open(route.Channel, s.Envelopes[0])
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Body) != "hi bob" || m.Sender != a.Self() {
		t.Fatalf("opened %q from %s", m.Body, m.Sender)
	}

	// A day later the ratchet moved on: yesterday's envelope still opens.
	c.t = c.t.Add(25 * time.Hour)
	draft.ID = envelope.MessageID{1}
	draft.Timestamp = c.t.Add(-25 * time.Hour)
	draft.Expiry = c.t.Add(time.Hour)
	s2, err := sealer.Broadcast(ek, Signer(a.keys.Identity()), sk.Key[:], draft, route)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := opener.Open(route.Channel, s2.Envelopes[0]); err != nil {
		t.Fatalf("yesterday's envelope: %v", err)
	}

	// Direct: bob's box key from the roster.
	mb, _ := a.Roster().Member(b.Self())
	rcpt, err := mb.Recipient()
	if err != nil {
		t.Fatal(err)
	}
	draft.ID = envelope.MessageID{2}
	draft.Timestamp = time.Time{}
	draft.Expiry = c.t.Add(time.Hour)
	d, err := sealer.Direct(ek, Signer(a.keys.Identity()), rcpt, draft, route)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := opener.Open(route.Channel, d.Envelopes[0]); err != nil {
		t.Fatalf("direct: %v", err)
	}

	// Alice removes bob; bob's view applies it, and alice's new-epoch
	// envelopes are not for him.
	u, err := a.RemoveMember(b.Self())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.ApplyOp(u.Op.Raw()); err != nil {
		t.Fatal(err)
	}
	ek2, _ := a.SendEpochKeys()
	sk2, _ := a.SendKey()
	draft.ID = envelope.MessageID{3}
	s3, err := sealer.Broadcast(ek2, Signer(a.keys.Identity()), sk2.Key[:], draft, route)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := opener.Open(route.Channel, s3.Envelopes[0]); !errors.Is(err, envelope.ErrNotForUs) {
		t.Fatalf("removed member opened a new-epoch envelope: %v", err)
	}
}

// sealOpen carries key messages the way the node does: each in a direct
// envelope sealed under the epoch Outgoing names, opened by the recipient's
// own Keys.
func sealOpen(t *testing.T, c *clock, from *Circle, out []Outgoing, members map[string]*Circle) (opened int) {
	t.Helper()
	sealer := &envelope.Sealer{Now: c.Now}
	route := envelope.Route{Channel: "dir:test", MaxSize: 4096}
	for _, o := range out {
		to, ok := members[string(o.To)]
		if !ok {
			continue
		}
		var ek *envelope.EpochKeys
		if o.Epoch == (Epoch{}) {
			var err error
			if ek, err = from.SendEpochKeys(); err != nil {
				t.Fatalf("no keys to seal a %v under: %v", o.Msg.Kind, err)
			}
		} else {
			for _, k := range from.Epochs() {
				if k.Epoch == envelope.Epoch(o.Epoch) {
					ek = k
				}
			}
			if ek == nil {
				t.Fatalf("sender has no keys for epoch %s", o.Epoch)
			}
		}
		m, _ := from.Roster().Member(o.To)
		rcpt, err := m.Recipient()
		if err != nil {
			t.Fatal(err)
		}
		draft := envelope.Draft{Kind: envelope.KindSenderKey, Expiry: c.t.Add(time.Hour), Body: o.Msg.Marshal()}
		s, err := sealer.Direct(ek, Signer(from.keys.Identity()), rcpt, draft, route)
		if err != nil {
			t.Fatal(err)
		}
		opener := envelope.NewOpener(to, to.Self(), envelope.OpenOptions{Now: c.Now})
		msg, err := opener.Open(route.Channel, s.Envelopes[0])
		if err != nil {
			t.Fatalf("%v to a member that has not caught up: %v", o.Msg.Kind, err)
		}
		km, err := ParseKeyMsg(msg.Body)
		if err != nil {
			t.Fatal(err)
		}
		replies, err := to.HandleKeyMsg(msg.Sender, km)
		if err != nil {
			t.Fatal(err)
		}
		opened++
		opened += sealOpen(t, c, to, replies, members)
	}
	return opened
}

// TestKeyMessagesReachLaggingMembers: after a removal, the contribution and
// the new sender keys are sealed under the previous epoch, so a member that
// has not applied the removal yet — or has, but lacks the contribution —
// can open them. Sealed under the new epoch they would be lost.
func TestKeyMessagesReachLaggingMembers(t *testing.T) {
	c := &clock{time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	g := group(t, c, 4)
	a, b, d, x := g[0], g[1], g[2], g[3]
	members := map[string]*Circle{string(a.Self()): a, string(b.Self()): b, string(d.Self()): d}
	old := a.Epoch()
	u, err := a.RemoveMember(x.Self())
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range u.Send {
		if o.Epoch != old {
			t.Fatalf("%v to a member of the old epoch sealed under %s, want the old epoch", o.Msg.Kind, o.Epoch)
		}
	}
	// b gets the key messages before the op; d applies the op first.
	ud, err := d.ApplyOp(u.Op.Raw())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.SendEpochKeys(); !errors.Is(err, ErrMissingSecret) {
		t.Fatalf("d can seal under the new epoch without the contribution: %v", err)
	}
	if n := sealOpen(t, c, a, u.Send, members); n != len(u.Send) {
		t.Fatalf("%d of %d opened", n, len(u.Send))
	}
	sealOpen(t, c, d, ud.Send, members)
	ub, err := b.ApplyOp(u.Op.Raw())
	if err != nil {
		t.Fatal(err)
	}
	sealOpen(t, c, b, ub.Send, members)
	for _, m := range []*Circle{a, b, d} {
		if r := m.Requests(); len(r) != 0 {
			t.Fatalf("%s still misses keys: %+v", m.Self(), r)
		}
		if m.Epoch() != a.Epoch() {
			t.Fatal("epochs differ")
		}
	}
}

// TestHistorySetting: with the setting on, a new member opens what was
// sent before it joined; with it off it cannot.
func TestHistorySetting(t *testing.T) {
	for _, history := range []bool{true, false} {
		t.Run(map[bool]string{true: "on", false: "off"}[history], func(t *testing.T) {
			c := &clock{time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
			a, _, err := Create(newKeyring(t, c), "friends", "alice", history, opts(c))
			if err != nil {
				t.Fatal(err)
			}
			members := map[string]*Circle{string(a.Self()): a}
			join(t, c, a, "bob", members)
			ek, _ := a.SendEpochKeys()
			sk, _ := a.SendKey()
			route := envelope.Route{Channel: "dir:test", MaxSize: 4096}
			sealer := &envelope.Sealer{Now: c.Now}
			s, err := sealer.Broadcast(ek, Signer(a.keys.Identity()), sk.Key[:],
				envelope.Draft{Kind: envelope.KindChat, Expiry: c.t.Add(48 * time.Hour), Body: []byte("before carol")}, route)
			if err != nil {
				t.Fatal(err)
			}
			c.t = c.t.Add(time.Hour)
			carol := join(t, c, a, "carol", members)
			_, err = envelope.NewOpener(carol, carol.Self(), envelope.OpenOptions{Now: c.Now}).Open(route.Channel, s.Envelopes[0])
			if history && err != nil {
				t.Fatalf("history on: %v", err)
			}
			if !history && !errors.Is(err, envelope.ErrNotForUs) {
				t.Fatalf("history off: got %v, want ErrNotForUs", err)
			}
		})
	}
}
