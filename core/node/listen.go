package node

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/remora-p2p/remora/core/listenport"
	"github.com/remora-p2p/remora/core/transport"
)

// listen starts the transport. With KeepPorts, an address that leaves its
// port to the kernel gets the port bound there last time when it is free
// (core/listenport); if the transport then fails to bind any of them it
// starts again on fresh ports, so a kept port never costs a listener. The
// ports bound are recorded for the next start either way.
func (n *Node) listen(ctx context.Context, o transport.Options) (*transport.Transport, error) {
	configured := o.ListenAddrs
	if len(configured) == 0 {
		configured = transport.DefaultListenAddrs
	}
	last, err := n.db.ListenAddrs()
	if err != nil {
		n.log.Warn("listen: the last run's ports", "err", err)
	}
	kept := 0
	if n.opts.KeepPorts {
		o.ListenAddrs, kept = listenport.Keep(configured, last, listenport.Probe)
	}
	want := o.ListenAddrs
	tr, err := transport.New(ctx, o)
	if err == nil && kept > 0 {
		if missing := absent(want, configured, bound(tr)); missing != "" {
			// Taken between the probe and the bind.
			tr.Close()
			err = fmt.Errorf("%s was taken while starting", missing)
		}
	}
	if err != nil && kept > 0 {
		n.log.Info("listen: the last run's ports are not free; listening on new ones", "err", err)
		o.ListenAddrs, kept = configured, 0
		tr, err = transport.New(ctx, o)
	}
	if err != nil {
		return nil, err
	}
	remember := listenport.Remember(configured, bound(tr))
	if err := n.db.SetListenAddrs(remember); err != nil {
		n.log.Warn("listen: record the ports", "err", err)
	}
	switch {
	case !n.opts.KeepPorts:
		n.listenPorts = "new at every start (listen_new_ports = true)"
	case len(remember) == 0:
		n.listenPorts = "set in the config"
	case len(last) == 0:
		n.listenPorts = "chosen now; the next start keeps them: " + strings.Join(remember, " ")
	case kept == len(remember):
		n.listenPorts = fmt.Sprintf("kept from the last run: %s", strings.Join(remember, " "))
	default:
		n.listenPorts = fmt.Sprintf("%d of %d kept from the last run (the others were taken, or are new in the config): %s", kept, len(remember), strings.Join(remember, " "))
	}
	return tr, nil
}

// bound is what tr listens on, as strings.
func bound(tr *transport.Transport) []string {
	var out []string
	for _, a := range tr.ListenAddrs() {
		out = append(out, a.String())
	}
	return out
}

// absent is a kept address of want (one not in configured) that the
// transport did not bind, or "".
func absent(want, configured, bound []string) string {
	for _, a := range want {
		if !slices.Contains(configured, a) && !slices.Contains(bound, a) {
			return a
		}
	}
	return ""
}
