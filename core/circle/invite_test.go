package circle

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestInviteText(t *testing.T) {
	c := &clock{time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	a, _, err := Create(newKeyring(t, c), "friends", "alice", false, opts(c))
	if err != nil {
		t.Fatal(err)
	}
	inv, err := a.NewInvite("matrix:!room:example.org", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s := inv.String()
	if !strings.HasPrefix(s, InvitePrefix) {
		t.Fatalf("invite %q lacks the prefix", s)
	}
	got, err := ParseInvite(s)
	if err != nil {
		t.Fatal(err)
	}
	if got.Token != inv.Token || !got.Expires.Equal(inv.Expires) || got.Inviter != inv.Inviter ||
		!got.BoxKey.Equal(inv.BoxKey) || got.Hint != inv.Hint {
		t.Fatalf("round trip: %+v, want %+v", got, inv)
	}
	// No circle key travels in the invite.
	st, _ := a.State()
	if bytes.Contains([]byte(s), a.root[:]) || strings.Contains(string(st), s) {
		t.Fatal("invite holds a circle secret")
	}
	swap := func(i int) string {
		b := []byte(s)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"as printed", s, true},
		{"upper case (from the QR code)", strings.ToUpper(s), true},
		{"wrapped by a mail client", s[:40] + "\n  " + s[40:], true},
		{"one character mistyped", swap(30), false},
		{"last character mistyped", swap(len(s) - 1), false},
		{"truncated", s[:len(s)-5], false},
		{"prefix only", InvitePrefix, false},
		{"no prefix", s[len(InvitePrefix):], false},
		{"not base32", InvitePrefix + "!!!!", false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseInvite(tt.in)
			if tt.ok != (err == nil) {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInviteMalformed) {
				t.Fatalf("err %v is not ErrInviteMalformed", err)
			}
			if err != nil && !strings.Contains(err.Error(), "copy it again") {
				t.Fatalf("error does not say what to do: %v", err)
			}
		})
	}
	var qr bytes.Buffer
	inv.QR(&qr)
	if qr.Len() < 1000 || !strings.Contains(qr.String(), "█") {
		t.Fatalf("QR output %d bytes", qr.Len())
	}
	for _, bad := range []struct {
		hint string
		ttl  time.Duration
	}{
		{"", 25 * time.Hour},
		{"", 0},
		{"https://user:secret@git.example.org/repo.git", time.Hour},
		{strings.Repeat("x", 300), time.Hour},
	} {
		if _, err := a.NewInvite(bad.hint, bad.ttl); err == nil {
			t.Fatalf("NewInvite(%q, %s) accepted", bad.hint, bad.ttl)
		}
	}
}

func TestInviteMisuse(t *testing.T) {
	base := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	setup := func(t *testing.T) (*clock, *Circle, Invite) {
		c := &clock{base}
		a, _, err := Create(newKeyring(t, c), "friends", "alice", false, opts(c))
		if err != nil {
			t.Fatal(err)
		}
		inv, err := a.NewInvite("dir:/srv/remora", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return c, a, inv
	}
	t.Run("expired at the joiner", func(t *testing.T) {
		c, _, inv := setup(t)
		_, _, err := RequestJoin(newKeyring(t, c), inv, "bob", c.t.Add(2*time.Hour))
		if !errors.Is(err, ErrInviteExpired) || !strings.Contains(err.Error(), "ask the inviter for a new one") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("expired at the inviter", func(t *testing.T) {
		c, a, inv := setup(t)
		req, _, err := RequestJoin(newKeyring(t, c), inv, "bob", c.t)
		if err != nil {
			t.Fatal(err)
		}
		c.t = c.t.Add(2 * time.Hour)
		if _, err := a.OpenJoin(req); !errors.Is(err, ErrInviteExpired) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("reused by another device", func(t *testing.T) {
		c, a, inv := setup(t)
		req1, _, _ := RequestJoin(newKeyring(t, c), inv, "bob", c.t)
		req2, _, _ := RequestJoin(newKeyring(t, c), inv, "eve", c.t)
		jr, err := a.OpenJoin(req1)
		if err != nil {
			t.Fatal(err)
		}
		w, _, err := a.Welcome(approve(t, a, jr))
		if err != nil || w == nil {
			t.Fatal(err)
		}
		if _, err := a.OpenJoin(req2); !errors.Is(err, ErrInviteUsed) || !strings.Contains(err.Error(), "ask for a new one") {
			t.Fatalf("got %v", err)
		}
		// The same device may retry (its welcome may have been lost).
		jr, err = a.OpenJoin(req1)
		if err != nil || !jr.Resend {
			t.Fatalf("retry by the same device: %v", err)
		}
	})
	t.Run("wrong token", func(t *testing.T) {
		c, a, inv := setup(t)
		forged := inv
		forged.Token[0] ^= 1
		req, _, _ := RequestJoin(newKeyring(t, c), forged, "eve", c.t)
		if _, err := a.OpenJoin(req); !errors.Is(err, ErrInviteInvalid) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("sealed to someone else", func(t *testing.T) {
		c, a, inv := setup(t)
		other := newKeyring(t, c)
		forged := inv
		forged.BoxKey = other.Current().Public
		req, _, _ := RequestJoin(newKeyring(t, c), forged, "eve", c.t)
		if _, err := a.OpenJoin(req); !errors.Is(err, ErrInviteInvalid) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("tampered request", func(t *testing.T) {
		c, a, inv := setup(t)
		req, _, _ := RequestJoin(newKeyring(t, c), inv, "bob", c.t)
		req[len(req)-1] ^= 1
		if _, err := a.OpenJoin(req); !errors.Is(err, ErrInviteInvalid) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("welcome for another join", func(t *testing.T) {
		c, a, inv := setup(t)
		kb := newKeyring(t, c)
		req, pending, _ := RequestJoin(kb, inv, "bob", c.t)
		jr, err := a.OpenJoin(req)
		if err != nil {
			t.Fatal(err)
		}
		jr = approve(t, a, jr)
		// A second invite's welcome must not be accepted for the first.
		inv2, _ := a.NewInvite("", time.Hour)
		req2, _, _ := RequestJoin(kb, inv2, "bob", c.t)
		jr2, err := a.OpenJoin(req2)
		if err != nil {
			t.Fatal(err)
		}
		w2, _, err := a.Welcome(approve(t, a, jr2))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := Join(kb, pending, w2, opts(c)); !errors.Is(err, ErrWelcomeInvalid) {
			t.Fatalf("got %v", err)
		}
		w, _, err := a.Welcome(jr)
		if err != nil {
			t.Fatal(err)
		}
		w[len(w)-3] ^= 1
		if _, _, err := Join(kb, pending, w, opts(c)); !errors.Is(err, ErrWelcomeInvalid) {
			t.Fatalf("tampered welcome: %v", err)
		}
	})
	t.Run("non-admin inviter", func(t *testing.T) {
		c, a, _ := setup(t)
		members := map[string]*Circle{string(a.Self()): a}
		b := join(t, c, a, "bob", members)
		_, err := b.NewInvite("", time.Hour)
		if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "ask alice") {
			t.Fatalf("a member's invite: %v, want a refusal naming the admin", err)
		}
	})
	t.Run("invite never carries the welcome secrets", func(t *testing.T) {
		c, a, inv := setup(t)
		kb := newKeyring(t, c)
		req, pending, _ := RequestJoin(kb, inv, "bob", c.t)
		jr, _ := a.OpenJoin(req)
		w, _, _ := a.Welcome(approve(t, a, jr))
		if bytes.Contains(w, a.root[:]) {
			t.Fatal("welcome carries the root secret in clear")
		}
		b, _, err := Join(kb, pending, w, opts(c))
		if err != nil {
			t.Fatal(err)
		}
		if b.root != a.root || !b.Roster().IsMember(b.Self()) {
			t.Fatal("joiner did not get the circle")
		}
	})
}
