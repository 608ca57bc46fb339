// Package listenport keeps a node's listen ports across restarts.
//
// A node that listens on port 0 gets a new port from the kernel at every
// start, and every address its friends hold for it — in their peer caches,
// in the presence records still on the channels' boards, in a NAT's or a
// firewall's rule — goes stale with the restart: a friend's peer cache can
// then reach it only after a fresh record has come round by some other box.
// Syncthing (22000) and IPFS (4001) listen on fixed ports, and Tailscale
// binds the port it used last time; remora does the latter, so a port set in
// the config is left alone and an unset one (port 0) becomes the one bound
// last time, when it is still free.
package listenport

import (
	"net"
	"strconv"

	ma "github.com/multiformats/go-multiaddr"
)

// Free reports whether a socket can be bound on network ("tcp4", "tcp6",
// "udp4" or "udp6": the family of the address, as the transport binds it)
// at host:port now. The probe is closed at once: between the probe and the
// real bind another process may still take the port, and the node's
// transport then fails to listen there and falls back to a fresh port the
// way it always has.
type Free func(network, host string, port int) bool

// Probe is the Free of the operating system: it binds and closes.
func Probe(network, host string, port int) bool {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	switch network {
	case "tcp4", "tcp6":
		l, err := net.Listen(network, addr)
		if err != nil {
			return false
		}
		return l.Close() == nil
	case "udp4", "udp6":
		c, err := net.ListenPacket(network, addr)
		if err != nil {
			return false
		}
		return c.Close() == nil
	}
	return false
}

// Keep returns listen with every address whose port is 0 replaced by the
// address of the same shape (IP, transport, protocols on top) that was bound
// last time, if its port is free now. kept counts the replaced addresses.
// Addresses that do not parse are returned as they are: the transport
// reports them.
func Keep(listen, last []string, free Free) (out []string, kept int) {
	before := map[string]string{} // shape → last bound address
	for _, a := range last {
		if s, _, _, _, ok := shape(a); ok {
			before[s] = a
		}
	}
	for _, a := range listen {
		s, network, host, port, ok := shape(a)
		if !ok || port != 0 {
			out = append(out, a)
			continue
		}
		prev, found := before[s]
		if !found {
			out = append(out, a)
			continue
		}
		_, _, _, p, _ := shape(prev)
		if p == 0 || !free(network, host, p) {
			out = append(out, a)
			continue
		}
		out = append(out, prev)
		kept++
	}
	return out, kept
}

// Remember picks, from the addresses the transport bound, those that answer
// an address of listen with port 0: the ones Keep may take again.
func Remember(listen, bound []string) []string {
	want := map[string]bool{}
	for _, a := range listen {
		if s, _, _, port, ok := shape(a); ok && port == 0 {
			want[s] = true
		}
	}
	var out []string
	for _, a := range bound {
		if s, _, _, port, ok := shape(a); ok && port != 0 && want[s] {
			want[s] = false // one per shape
			out = append(out, a)
		}
	}
	return out
}

// shape is a multiaddr with its port set to 0, with the port and what a
// probe needs: "/ip4/0.0.0.0/udp/4001/quic-v1" has the shape
// "/ip4/0.0.0.0/udp/0/quic-v1", network "udp4", host "0.0.0.0", port 4001.
func shape(addr string) (s, network, host string, port int, ok bool) {
	m, err := ma.NewMultiaddr(addr)
	if err != nil {
		return "", "", "", 0, false
	}
	var out ma.Multiaddr
	family := ""
	for _, c := range m {
		switch c.Code() {
		case ma.P_IP4, ma.P_IP6:
			host, family = c.Value(), map[int]string{ma.P_IP4: "4", ma.P_IP6: "6"}[c.Code()]
		case ma.P_TCP, ma.P_UDP:
			if network != "" {
				return "", "", "", 0, false // tunnelled: not ours to keep
			}
			network = map[int]string{ma.P_TCP: "tcp", ma.P_UDP: "udp"}[c.Code()]
			port, err = strconv.Atoi(c.Value())
			if err != nil {
				return "", "", "", 0, false
			}
			zero, err := ma.NewComponent(c.Protocol().Name, "0")
			if err != nil {
				return "", "", "", 0, false
			}
			out = append(out, *zero)
			continue
		}
		out = append(out, c)
	}
	if host == "" || network == "" {
		return "", "", "", 0, false
	}
	return out.String(), network + family, host, port, true
}
