package node

import (
	"context"
	"fmt"
	"strings"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/remora-p2p/remora/core/discovery"
	"github.com/remora-p2p/remora/core/lan"
)

// lanSource is the mDNS box: core/lan announces this node on the allowed
// networks, sealed for each circle, and reports the members it reads.
type lanSource struct{ n *Node }

func (s lanSource) Name() string { return boxMDNS }

func (s lanSource) Run(ctx context.Context, emit func(discovery.Found)) error {
	n := s.n
	svc := lan.New(lan.Options{
		Self:     n.ID(),
		Policy:   *n.opts.LAN,
		SealKeys: func() [][32]byte { return n.lanKeys(true) },
		OpenKeys: func() [][32]byte { return n.lanKeys(false) },
		Addrs: func() []ma.Multiaddr {
			var out []ma.Multiaddr
			for _, a := range n.tr.Addrs() {
				out = append(out, a.Multiaddr)
			}
			return out
		},
		Found: func(a lan.Announcement) {
			if n.isMember(a.Peer) {
				emit(discovery.Found{Peer: a.Peer, Addrs: a.Addrs, At: a.IssuedAt})
			}
		},
		Networks: func(nets []lan.Network) { n.noteLAN(nets) },
		Logger:   n.log.With("subsystem", "lan"),
		Now:      n.opts.Now,
	})
	return svc.Run(ctx)
}

// lanKeys are the circles' mDNS keys: to seal, each circle's current one
// (circles with another member only); to open, every epoch in grace too.
func (n *Node) lanKeys(seal bool) [][32]byte {
	var out [][32]byte
	for _, c := range n.allCircles() {
		if seal && c.Roster().Len() < 2 {
			continue
		}
		secrets, _ := c.EpochSecrets()
		if len(secrets) == 0 {
			continue
		}
		if seal {
			secrets = secrets[:1]
		}
		for _, s := range secrets {
			out = append(out, s.LANKey())
		}
	}
	return out
}

// noteLAN puts the networks mDNS runs on, and why not on the others, in
// the box report.
func (n *Node) noteLAN(nets []lan.Network) {
	var on, off []string
	for _, nw := range nets {
		if nw.Allowed {
			on = append(on, fmt.Sprintf("%s (%s)", nw.Name, nw.Why))
		} else {
			off = append(off, fmt.Sprintf("%s (%s)", nw.Name, nw.Why))
		}
	}
	var parts []string
	if len(on) > 0 {
		parts = append(parts, "announcing on "+strings.Join(on, ", "))
		n.disc.Attempt(boxMDNS)
		n.disc.Succeeded(boxMDNS)
	} else {
		parts = append(parts, "on no network here")
	}
	if len(off) > 0 {
		parts = append(parts, "not on "+strings.Join(off, ", "))
	}
	n.disc.Note(boxMDNS, strings.Join(parts, "; "))
}
