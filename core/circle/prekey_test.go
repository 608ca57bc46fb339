package circle

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/envelope"
)

// TestDirectOpensAfterSixtyDays: members rotate their prekeys weekly and
// publish each in the roster (OpPrekey), so a direct envelope sealed to the
// roster's prekey of a member keeps opening, week after week, for 60 days.
// Before, the roster kept the join-time prekey: its private half was deleted
// three weeks after it was made, and from then on nothing sealed to the
// member opened.
func TestDirectOpensAfterSixtyDays(t *testing.T) {
	c := &clock{time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	a, _, err := Create(newKeyring(t, c), "friends", "alice", false, opts(c))
	if err != nil {
		t.Fatal(err)
	}
	members := map[string]*Circle{string(a.Self()): a}
	b := join(t, c, a, "bob", members)
	sealer := &envelope.Sealer{Now: c.Now}
	route := envelope.Route{Channel: "dir:test", MaxSize: 4096}
	send := func(from, to *Circle, text string) error {
		set := NewSet(to.keys)
		set.Put(to)
		opener := envelope.NewOpener(set, to.Self(), envelope.OpenOptions{Now: c.Now})
		ek, err := from.SendEpochKeys()
		if err != nil {
			return err
		}
		m, _ := from.Roster().Member(to.Self())
		rcpt, err := m.Recipient()
		if err != nil {
			return err
		}
		var id envelope.MessageID
		copy(id[:], text)
		d, err := sealer.Direct(ek, Signer(from.keys.Identity()), rcpt,
			envelope.Draft{Kind: envelope.KindChat, ID: id, Expiry: c.t.Add(time.Hour), Body: []byte(text)}, route)
		if err != nil {
			return err
		}
		msg, err := opener.Open(route.Channel, d.Envelopes[0])
		if err != nil {
			return err
		}
		if string(msg.Body) != text {
			return fmt.Errorf("opened %q", msg.Body)
		}
		return nil
	}
	for day := 1; day <= 60; day++ {
		c.t = c.t.Add(24 * time.Hour)
		for _, m := range []*Circle{a, b} {
			if _, err := m.keys.Rotate(); err != nil {
				t.Fatal(err)
			}
			m.Maintain()
			u, err := m.PublishPrekey()
			if err != nil {
				t.Fatal(err)
			}
			if u == nil {
				continue
			}
			for _, o := range members {
				if o != m {
					if _, err := o.ApplyOpFrom(m.Self(), u.Op.Raw()); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		if err := send(a, b, fmt.Sprint("a to b, day ", day)); err != nil {
			t.Fatalf("day %d: direct to bob: %v", day, err)
		}
		if err := send(b, a, fmt.Sprint("b to a, day ", day)); err != nil {
			t.Fatalf("day %d: direct to alice: %v", day, err)
		}
	}
	// The clock moved two months in one step, and the member that rotated
	// has not published yet: its old key still opens what was sealed to it.
	c.t = c.t.Add(60 * 24 * time.Hour)
	if _, err := b.keys.Rotate(); err != nil {
		t.Fatal(err)
	}
	if err := send(a, b, "after the jump, before the publication"); err != nil {
		t.Fatalf("sealed to bob's previous key: %v", err)
	}
	u, err := b.PublishPrekey()
	if err != nil || u == nil {
		t.Fatalf("publish after the jump: %v %v", u, err)
	}
	if _, err := a.ApplyOp(u.Op.Raw()); err != nil {
		t.Fatal(err)
	}
	if m, _ := a.Roster().Member(b.Self()); !m.Prekey.Public.Equal(b.keys.Current().Public) {
		t.Fatal("alice's roster does not hold bob's current prekey")
	}
	if err := send(a, b, "after the jump"); err != nil {
		t.Fatal(err)
	}
}

// TestPrekeyOpOnlyByItsOwner: nobody publishes a prekey for another member,
// not even an admin: the op must be authored by the member and the prekey
// signed by it.
func TestPrekeyOpOnlyByItsOwner(t *testing.T) {
	c := &clock{time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	g := group(t, c, 3)
	victim := g[2]
	attacker := newKeyring(t, c) // a prekey whose private half the admin holds
	forged := []Op{
		// the admin names the member as target: not its own prekey
		{Kind: OpPrekey, Target: victim.Self(), Prekey: victim.keys.Current()},
		// the admin's own key, signed by the admin, for the member
		{Kind: OpPrekey, Target: victim.Self(), Prekey: attacker.Current()},
	}
	for i, o := range forged {
		o.Circle, o.Parents, o.Time, o.Author = g[0].ID(), g[0].Roster().Heads, c.t, g[0].Self()
		// Signed as the admin, bypassing the local checks of sign.
		wire := append([]byte{opVersion}, o.body()...)
		raw := append(wire, g[0].keys.Identity().Sign(opSigned(wire))...)
		if _, err := ParseOp(raw); !errors.Is(err, ErrMalformedOp) {
			t.Fatalf("forged prekey op %d parsed: %v", i, err)
		}
		if _, err := g[1].ApplyOp(raw); err == nil {
			t.Fatalf("forged prekey op %d applied", i)
		}
	}
	if m, _ := g[1].Roster().Member(victim.Self()); !m.Prekey.Public.Equal(victim.keys.Current().Public) {
		t.Fatal("the member's prekey changed")
	}
}
