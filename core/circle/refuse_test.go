package circle

import (
	"errors"
	"testing"
	"time"
)

func TestRefusalReachesOnlyTheRefusedJoiner(t *testing.T) {
	c := &clock{time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	a, _, err := Create(newKeyring(t, c), "friends", "alice", false, opts(c))
	if err != nil {
		t.Fatal(err)
	}
	inv, err := a.NewInvite("dir:/srv/remora", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, bobJoin, _ := RequestJoin(newKeyring(t, c), inv, "bob", c.t)
	req1, _, _ := RequestJoin(newKeyring(t, c), inv, "bob", c.t)
	req2, eveJoin, _ := RequestJoin(newKeyring(t, c), inv, "eve", c.t)
	jr, err := a.OpenJoin(req1)
	if err != nil {
		t.Fatal(err)
	}
	approve(t, a, jr)
	req, err := a.OpenJoin(req2)
	if !errors.Is(err, ErrInviteUsed) || req == nil {
		t.Fatalf("OpenJoin of a reused invite: %v, request %v", err, req)
	}
	refusal, err := Refuse(req, err)
	if err != nil {
		t.Fatal(err)
	}
	if got := eveJoin.Refused(refusal); !errors.Is(got, ErrInviteUsed) {
		t.Fatalf("eve reads %v, want ErrInviteUsed", got)
	}
	if got := bobJoin.Refused(refusal); got != nil {
		t.Fatalf("another joiner of the same invite reads %v, want nil: the refusal names its joiner", got)
	}
	tampered := append([]byte{}, refusal...)
	tampered[8] = refusedExpired
	if got := eveJoin.Refused(tampered); got != nil {
		t.Fatalf("a tampered refusal reads %v, want nil", got)
	}
	if _, err := Refuse(req, ErrInviteInvalid); err == nil {
		t.Fatal("Refuse must answer only used or expired invites")
	}
	if _, err := Refuse(&JoinRequest{}, ErrInviteUsed); err == nil {
		t.Fatal("Refuse must need an authentic request")
	}
}
