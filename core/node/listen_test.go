package node

import "testing"

func TestAbsent(t *testing.T) {
	configured := []string{"/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"}
	tests := []struct {
		name        string
		want, bound []string
		missing     string
	}{
		{"all kept and bound", []string{"/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"},
			[]string{"/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"}, ""},
		{"one left to the kernel", []string{"/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/4001/quic-v1"},
			[]string{"/ip4/0.0.0.0/tcp/39999", "/ip4/0.0.0.0/udp/4001/quic-v1"}, ""},
		{"a kept port taken before the bind", []string{"/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"},
			[]string{"/ip4/0.0.0.0/udp/4001/quic-v1"}, "/ip4/0.0.0.0/tcp/4001"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := absent(tt.want, configured, tt.bound); got != tt.missing {
				t.Fatalf("absent = %q, want %q", got, tt.missing)
			}
		})
	}
}
