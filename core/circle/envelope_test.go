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
