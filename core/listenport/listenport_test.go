package listenport

import (
	"net"
	"slices"
	"testing"
)

func TestKeep(t *testing.T) {
	all := func(string, string, int) bool { return true }
	busy := func(network, _ string, port int) bool { return !(network == "tcp4" && port == 4001) }
	tests := []struct {
		name     string
		listen   []string
		last     []string
		free     Free
		want     []string
		wantKept int
	}{
		{"nothing remembered", []string{"/ip4/0.0.0.0/tcp/0"}, nil, all,
			[]string{"/ip4/0.0.0.0/tcp/0"}, 0},
		{"both kept", []string{"/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"},
			[]string{"/ip4/0.0.0.0/udp/4002/quic-v1", "/ip4/0.0.0.0/tcp/4001"}, all,
			[]string{"/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4002/quic-v1"}, 2},
		{"busy port left to the kernel", []string{"/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"},
			[]string{"/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"}, busy,
			[]string{"/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/4001/quic-v1"}, 1},
		{"a configured port stays", []string{"/ip4/0.0.0.0/tcp/5000"}, []string{"/ip4/0.0.0.0/tcp/4001"}, all,
			[]string{"/ip4/0.0.0.0/tcp/5000"}, 0},
		{"another interface is another shape", []string{"/ip4/127.0.0.1/tcp/0"}, []string{"/ip4/0.0.0.0/tcp/4001"}, all,
			[]string{"/ip4/127.0.0.1/tcp/0"}, 0},
		{"QUIC is not TCP", []string{"/ip4/0.0.0.0/udp/0/quic-v1"}, []string{"/ip4/0.0.0.0/udp/4001/webrtc-direct"}, all,
			[]string{"/ip4/0.0.0.0/udp/0/quic-v1"}, 0},
		{"IPv6", []string{"/ip6/::/tcp/0"}, []string{"/ip6/::/tcp/4001"}, all,
			[]string{"/ip6/::/tcp/4001"}, 1},
		{"garbage passes through", []string{"not an address"}, []string{"/ip4/0.0.0.0/tcp/4001", "junk"}, all,
			[]string{"not an address"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, kept := Keep(tt.listen, tt.last, tt.free)
			if !slices.Equal(got, tt.want) || kept != tt.wantKept {
				t.Fatalf("Keep = %q (%d kept), want %q (%d)", got, kept, tt.want, tt.wantKept)
			}
		})
	}
}

func TestRemember(t *testing.T) {
	listen := []string{"/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1", "/ip6/::/tcp/7000"}
	bound := []string{"/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4002/quic-v1", "/ip6/::/tcp/7000", "/ip4/0.0.0.0/tcp/4003"}
	got := Remember(listen, bound)
	want := []string{"/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4002/quic-v1"}
	if !slices.Equal(got, want) {
		t.Fatalf("Remember = %q, want %q", got, want)
	}
}

// TestProbe binds real sockets: a port in use is not free, the same port
// is free again once its holder closes.
func TestProbe(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if Probe("tcp4", "127.0.0.1", port) {
		t.Fatalf("tcp port %d reported free while it is listened on", port)
	}
	l.Close()
	if !Probe("tcp4", "127.0.0.1", port) {
		t.Fatalf("tcp port %d not free after its listener closed", port)
	}
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	uport := c.LocalAddr().(*net.UDPAddr).Port
	if Probe("udp4", "127.0.0.1", uport) {
		t.Fatalf("udp port %d reported free while bound", uport)
	}
	c.Close()
	if !Probe("udp4", "127.0.0.1", uport) {
		t.Fatalf("udp port %d not free after close", uport)
	}
	if Probe("tcp", "127.0.0.1", 1) || Probe("sctp", "127.0.0.1", 1) {
		t.Fatal("an unknown network reported free")
	}
}

// FuzzKeep: listen addresses come from the user's config; whatever they
// hold, Keep returns one address per address given and never invents a
// port for an address that had one.
func FuzzKeep(f *testing.F) {
	f.Add("/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/tcp/4001")
	f.Add("/ip6/::/udp/0/quic-v1", "/ip6/::/udp/9/quic-v1")
	f.Add("/dns4/example.org/tcp/0", "/ip4/1.2.3.4/tcp/0/p2p-circuit")
	f.Fuzz(func(t *testing.T, listen, last string) {
		all := func(string, string, int) bool { return true }
		got, kept := Keep([]string{listen}, []string{last}, all)
		if len(got) != 1 || kept > 1 {
			t.Fatalf("Keep(%q, %q) = %q, %d", listen, last, got, kept)
		}
		if _, _, _, port, ok := shape(listen); ok && port != 0 && got[0] != listen {
			t.Fatalf("Keep changed %q, which has a port, to %q", listen, got[0])
		}
	})
}
