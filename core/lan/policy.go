package lan

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// Mode says where mDNS runs.
type Mode string

// Modes.
const (
	Auto Mode = "auto" // private networks only (the default)
	On   Mode = "on"   // every network not marked public
	Off  Mode = "off"  // nowhere
)

// ParseMode reads a mode ("" is Auto).
func ParseMode(s string) (Mode, error) {
	switch Mode(strings.ToLower(strings.TrimSpace(s))) {
	case "", Auto:
		return Auto, nil
	case On:
		return On, nil
	case Off:
		return Off, nil
	}
	return "", fmt.Errorf("lan: mdns mode %q: want auto, on or off", s)
}

// Policy decides on which networks mDNS runs.
type Policy struct {
	Mode Mode
	// Public are networks the user marks public: never announced on, even
	// when their addresses are private ones (a café's 10.0.0.0/8).
	Public []netip.Prefix
	// Private are networks to treat as private besides RFC 1918 (an
	// IPv6-only home, a lab).
	Private []netip.Prefix
}

// rfc1918 are the private IPv4 networks Auto trusts.
var rfc1918 = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
}

// Interface is one network interface as the policy sees it.
type Interface struct {
	Name  string
	Index int
	// Addrs are its addresses with their prefix lengths.
	Addrs []netip.Prefix
}

// Network is the policy's verdict on one interface.
type Network struct {
	Interface
	Allowed bool
	// Why says why (for `remora doctor`).
	Why string
}

// ID identifies the network the interface is on now (its networks'
// prefixes): when it changes, the names announced there are drawn afresh.
func (n Network) ID() string {
	var ps []string
	for _, a := range n.Addrs {
		ps = append(ps, a.Masked().String()+"@"+a.Addr().String())
	}
	slices.Sort(ps)
	return n.Name + "|" + strings.Join(ps, ",")
}

func inAny(a netip.Addr, ps []netip.Prefix) (netip.Prefix, bool) {
	for _, p := range ps {
		if p.Contains(a.Unmap()) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// Decide gives the verdict for each interface.
func (p Policy) Decide(ifaces []Interface) []Network {
	var out []Network
	for _, i := range ifaces {
		n := Network{Interface: i}
		n.Allowed, n.Why = p.decide(i)
		out = append(out, n)
	}
	return out
}

func (p Policy) decide(i Interface) (bool, string) {
	if p.Mode == Off {
		return false, "mdns is off"
	}
	for _, a := range i.Addrs {
		if pub, ok := inAny(a.Addr(), p.Public); ok {
			return false, fmt.Sprintf("%s is in %s, marked public", a.Addr(), pub)
		}
	}
	if p.Mode == On {
		return true, "mdns is on for every network not marked public"
	}
	for _, a := range i.Addrs {
		if pr, ok := inAny(a.Addr(), p.Private); ok {
			return true, fmt.Sprintf("%s is in %s, marked private", a.Addr(), pr)
		}
		if pr, ok := inAny(a.Addr(), rfc1918); ok && a.Addr().Unmap().Is4() {
			return true, fmt.Sprintf("%s is in %s, a private network", a.Addr(), pr)
		}
	}
	var as []string
	for _, a := range i.Addrs {
		as = append(as, a.Masked().String())
	}
	return false, fmt.Sprintf("not a private network (%s): list it under [lan] private if it is yours", strings.Join(as, ", "))
}

// SystemInterfaces lists the interfaces that are up, multicast and not
// loopback, with their addresses.
func SystemInterfaces() ([]Interface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("lan: interfaces: %w", err)
	}
	var out []Interface
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagMulticast == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		i := Interface{Name: ifc.Name, Index: ifc.Index}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			ones, bits := ipn.Mask.Size()
			if ip.Is4In6() && bits == 128 {
				ones -= 96
			}
			i.Addrs = append(i.Addrs, netip.PrefixFrom(ip.Unmap(), ones))
		}
		if len(i.Addrs) > 0 {
			out = append(out, i)
		}
	}
	return out, nil
}
