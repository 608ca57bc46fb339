package node

import (
	"testing"

	"github.com/remora-p2p/remora/core/envelope"
)

func TestArmorPrefixPerChannel(t *testing.T) {
	a, b := ArmorPrefix("friends-list"), ArmorPrefix("friends-room")
	if a == b {
		t.Fatalf("two channels share the prefix %q", a)
	}
	if ArmorPrefix("friends-list") != a {
		t.Fatal("the prefix is not stable: members would disagree")
	}
	if _, err := envelope.NewArmor(a); err != nil {
		t.Fatalf("prefix %q is not a valid armor prefix: %v", a, err)
	}
}
