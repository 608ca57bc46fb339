package lan

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"
)

type fakeServer struct {
	texts [][]string
	down  bool
}

func (f *fakeServer) SetText(t []string) { f.texts = append(f.texts, t) }
func (f *fakeServer) Shutdown()          { f.down = true }

type registration struct {
	instance, host string
	text           []string
	srv            *fakeServer
}

// TestNamesPerNetworkAndHour: the names announced are drawn afresh on
// another network and every Rotate, never otherwise; entries are re-sealed
// when keys change and before they age out; with nothing to announce the
// service is withdrawn.
func TestNamesPerNetworkAndHour(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	self := testPeer(t)
	keys := [][32]byte{key()}
	addr := "192.168.1.23"
	s := New(Options{
		Self:     self,
		Policy:   Policy{Mode: Auto},
		SealKeys: func() [][32]byte { return keys },
		OpenKeys: func() [][32]byte { return keys },
		Addrs:    func() []ma.Multiaddr { return []ma.Multiaddr{ma.StringCast("/ip4/" + addr + "/tcp/4001")} },
		Found:    func(Announcement) {},
		Now:      func() time.Time { return now },
	})
	var regs []registration
	s.register = func(instance, host string, port int, ips, text []string, ifc net.Interface) (server, error) {
		f := &fakeServer{}
		regs = append(regs, registration{instance, host, text, f})
		return f, nil
	}
	network := func(prefix string) Network {
		p := netip.MustParsePrefix(prefix)
		addr = p.Addr().String()
		return s.o.Policy.Decide([]Interface{{Name: "wlan0", Index: 1, Addrs: []netip.Prefix{p}}})[0]
	}
	home := network("192.168.1.23/24")
	s.announce(home, net.Interface{Index: 1, Name: "wlan0"})
	if len(regs) != 1 || len(regs[0].text) < MinEntries {
		t.Fatalf("first announcement: %d registrations, %+v", len(regs), regs)
	}
	for _, txt := range regs[0].text { // TestSealOpen: nothing in clear
		if !strings.HasPrefix(txt, entryPrefix) {
			t.Fatalf("TXT string %q is not an entry", txt)
		}
	}
	if !slices.ContainsFunc(regs[0].text, func(s string) bool { _, ok := Open(keys, s, now); return ok }) {
		t.Fatal("no entry of the announcement opens for a member")
	}
	now = now.Add(time.Minute)
	s.announce(home, net.Interface{Index: 1, Name: "wlan0"})
	if len(regs) != 1 {
		t.Fatal("new names on the same network within the hour")
	}
	now = now.Add(time.Hour)
	s.announce(home, net.Interface{Index: 1, Name: "wlan0"})
	if len(regs) != 2 || !regs[0].srv.down {
		t.Fatalf("after an hour: %d registrations, first withdrawn %v", len(regs), regs[0].srv.down)
	}
	office := network("10.20.30.40/16")
	s.announce(office, net.Interface{Index: 1, Name: "wlan0"})
	if len(regs) != 3 || !regs[1].srv.down {
		t.Fatalf("on another network: %d registrations, previous withdrawn %v", len(regs), regs[1].srv.down)
	}
	seen := map[string]bool{}
	for _, r := range regs {
		if seen[r.instance] || seen[r.host] || r.instance == r.host {
			t.Fatalf("a name came back: %+v", regs)
		}
		seen[r.instance], seen[r.host] = true, true
	}
	cur := regs[2].srv
	keys = append(keys, key())
	s.announce(office, net.Interface{Index: 1, Name: "wlan0"})
	if len(regs) != 3 || len(cur.texts) != 1 {
		t.Fatalf("a new circle's key: %d registrations, %d new texts; want the text re-sealed on the same names", len(regs), len(cur.texts))
	}
	now = now.Add(MaxAge / 3)
	s.announce(office, net.Interface{Index: 1, Name: "wlan0"})
	if len(cur.texts) != 2 || slices.Equal(cur.texts[0], cur.texts[1]) {
		t.Fatal("entries were not re-sealed before they age out")
	}
	keys = nil
	s.announce(office, net.Interface{Index: 1, Name: "wlan0"})
	if !cur.down || len(s.ann) != 0 {
		t.Fatal("with no circle to announce for, the service stayed")
	}
}
