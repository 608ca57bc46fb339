package lan

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

func testPeer(t testing.TB) peer.ID {
	_, pub, _ := crypto.GenerateEd25519Key(rand.Reader)
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func key() (k [32]byte) { rand.Read(k[:]); return }

var now = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

// TestSealOpen: a member with the circle's key reads the peer and its
// addresses; nobody else reads anything, and nothing in the string is the
// same twice.
func TestSealOpen(t *testing.T) {
	circle, other := key(), key()
	p := testPeer(t)
	addrs := []ma.Multiaddr{ma.StringCast("/ip4/192.0.2.10/tcp/4001"), ma.StringCast("/ip4/192.0.2.10/udp/4001/quic-v1")}
	a := Announcement{Peer: p, Addrs: addrs, IssuedAt: now}
	s1, err := Seal(circle, a)
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := Seal(circle, a)
	if s1 == s2 {
		t.Fatal("two announcements of the same thing are the same string")
	}
	if len(s1) > maxTXT {
		t.Fatalf("entry of %d characters does not fit a TXT string", len(s1))
	}
	// The string is base64: look for the peer ID and address bytes in what
	// it decodes to (an unsealed entry would show them there).
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(s1, entryPrefix))
	if err != nil {
		t.Fatal(err)
	}
	for _, leak := range [][]byte{[]byte(p), addrs[0].Bytes(), addrs[1].Bytes()} { // ports are in the address bytes
		if bytes.Contains(raw, leak) {
			t.Fatalf("entry shows % x in clear: %s", leak, s1)
		}
	}
	got, ok := Open([][32]byte{other, circle}, s1, now.Add(time.Minute))
	if !ok || got.Peer != p || len(got.Addrs) != 2 || !got.Addrs[1].Equal(addrs[1]) {
		t.Fatalf("member's open: %v %+v", ok, got)
	}
	tampered := []byte(s1)
	tampered[len(tampered)-3] ^= 1
	tests := []struct {
		name string
		keys [][32]byte
		txt  string
		at   time.Time
	}{
		{"another circle's key", [][32]byte{other}, s1, now},
		{"no key", nil, s1, now},
		{"tampered", [][32]byte{circle}, string(tampered), now},
		{"too old (a replay)", [][32]byte{circle}, s1, now.Add(MaxAge + time.Second)},
		{"from the future", [][32]byte{circle}, s1, now.Add(-MaxAge - time.Second)},
		{"padding", [][32]byte{circle}, Pad(len(s1)), now},
		{"libp2p's own TXT", [][32]byte{circle}, "dnsaddr=/ip4/192.0.2.1/tcp/1/p2p/" + p.String(), now},
		{"not base64", [][32]byte{circle}, "s=***", now},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if a, ok := Open(tt.keys, tt.txt, tt.at); ok {
				t.Fatalf("opened: %+v", a)
			}
		})
	}
	if len(Pad(len(s1))) != len(s1) {
		t.Fatalf("padding of %d characters for an entry of %d", len(Pad(len(s1))), len(s1))
	}
}

// TestSealTrimsAddresses: addresses that do not fit are left out, never
// the entry; a peer without an address that fits is an error.
func TestSealTrimsAddresses(t *testing.T) {
	k := key()
	var addrs []ma.Multiaddr
	for i := range 20 {
		addrs = append(addrs, ma.StringCast(fmt.Sprintf("/ip6/2001:db8::1:1:1:%x/udp/4001/quic-v1", i)))
	}
	s, err := Seal(k, Announcement{Peer: testPeer(t), Addrs: addrs, IssuedAt: now})
	if err != nil || len(s) > maxTXT {
		t.Fatalf("%v, %d characters", err, len(s))
	}
	a, ok := Open([][32]byte{k}, s, now)
	if !ok || len(a.Addrs) == 0 || len(a.Addrs) >= 20 {
		t.Fatalf("%v: %d addresses", ok, len(a.Addrs))
	}
	if _, err := Seal(k, Announcement{Peer: testPeer(t), IssuedAt: now}); err == nil {
		t.Fatal("sealed an entry without addresses")
	}
}

func prefixes(ss ...string) (out []netip.Prefix) {
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// TestPolicy: on by default on private networks only, never on a network
// marked public.
func TestPolicy(t *testing.T) {
	home := Interface{Name: "wlan0", Addrs: prefixes("192.168.1.23/24", "fe80::1/64")}
	cafe := Interface{Name: "wlan0", Addrs: prefixes("10.8.0.5/16")}
	doc := Interface{Name: "eth0", Addrs: prefixes("192.0.2.2/24", "fd00::2/64")}
	public := Interface{Name: "eth0", Addrs: prefixes("198.51.100.7/24")}
	tests := []struct {
		name   string
		policy Policy
		iface  Interface
		want   bool
		why    string
	}{
		{"auto, home network", Policy{Mode: Auto}, home, true, "private network"},
		{"auto, a public address", Policy{Mode: Auto}, public, false, "not a private network"},
		{"auto, documentation range and ULA only", Policy{Mode: Auto}, doc, false, "[lan] private"},
		{"auto, the user marks the café public", Policy{Mode: Auto, Public: prefixes("10.8.0.0/16")}, cafe, false, "marked public"},
		{"auto, the user marks a lab private", Policy{Mode: Auto, Private: prefixes("192.0.2.0/24")}, doc, true, "marked private"},
		{"on, a public address", Policy{Mode: On}, public, true, "every network"},
		{"on, marked public", Policy{Mode: On, Public: prefixes("198.51.100.0/24")}, public, false, "marked public"},
		{"off, home network", Policy{Mode: Off}, home, false, "off"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := tt.policy.Decide([]Interface{tt.iface})[0]
			if n.Allowed != tt.want || !strings.Contains(n.Why, tt.why) {
				t.Fatalf("allowed %v (%s), want %v saying %q", n.Allowed, n.Why, tt.want, tt.why)
			}
		})
	}
	if _, err := ParseMode("sometimes"); err == nil || !strings.Contains(err.Error(), "auto, on or off") {
		t.Fatalf("bad mode: %v", err)
	}
	if m, err := ParseMode(""); err != nil || m != Auto {
		t.Fatalf("default mode %q %v", m, err)
	}
}

func FuzzOpen(f *testing.F) {
	k := key()
	s, _ := Seal(k, Announcement{Peer: testPeer(f), Addrs: []ma.Multiaddr{ma.StringCast("/ip4/192.0.2.1/tcp/1")}, IssuedAt: now})
	f.Add(s)
	f.Add("s=")
	f.Fuzz(func(t *testing.T, txt string) {
		if a, ok := Open([][32]byte{k}, txt, now); ok && (a.Peer == "" || len(a.Addrs) == 0) {
			t.Fatalf("opened an empty announcement: %+v", a)
		}
	})
}

// FuzzParse: whatever a member sealed, the reader never crashes on it and
// never returns an announcement without a peer or addresses.
func FuzzParse(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if a, err := parse(b); err == nil && (a.Peer == "" || len(a.Addrs) == 0) {
			t.Fatalf("parsed an empty announcement: %+v", a)
		}
	})
}
