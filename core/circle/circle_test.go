package circle

import (
	"testing"
	"time"
)

func TestCreateJoinSend(t *testing.T) {
	c := &clock{time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	ka := newKeyring(t, c)
	a, u, err := Create(ka, "friends", "alice", false, opts(c))
	if err != nil {
		t.Fatal(err)
	}
	if !u.EpochChanged || u.Op == nil || len(u.Send) != 0 {
		t.Fatalf("create update = %+v", u)
	}
	members := map[string]*Circle{string(a.Self()): a}
	b := join(t, c, a, "bob", members)
	if a.Epoch() != b.Epoch() {
		t.Fatal("inviter and joiner disagree on the epoch")
	}
	if !a.Roster().IsMember(b.Self()) || b.Roster().Name != "friends" {
		t.Fatal("joiner not in roster")
	}
	for _, pair := range [][2]*Circle{{a, b}, {b, a}} {
		send, recv := pair[0], pair[1]
		sk, err := send.SendKey()
		if err != nil {
			t.Fatal(err)
		}
		rk, err := recv.ReceiveKey(sk.Epoch, send.Self(), sk.Day)
		if err != nil {
			t.Fatal(err)
		}
		if rk != sk.Key {
			t.Fatal("sender and receiver keys differ")
		}
	}
	sa, err := a.EpochSecrets()
	if err != nil {
		t.Fatal(err)
	}
	sb, err := b.EpochSecrets()
	if err != nil {
		t.Fatal(err)
	}
	if string(sa[0].Bytes()) != string(sb[0].Bytes()) || sa[0].BoardKey("x") != sb[0].BoardKey("x") {
		t.Fatal("epoch secrets differ")
	}
}
