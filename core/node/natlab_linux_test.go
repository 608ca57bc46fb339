package node

// The node-level NAT lab (issue #15): real nodes, each this test binary
// re-executed inside a network namespace, behind Linux NAT routers built
// with iptables; their only common ground is one dir channel on a shared
// folder (the file system is shared, the network is not). All addresses
// are RFC 5737 documentation ranges and no route leads out. The test
// process drives the nodes through their local API sockets.

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/core/lan"
	"github.com/remora-p2p/remora/core/transport"
	"github.com/remora-p2p/remora/testenv"
)

// Environment of a re-executed lab node.
const (
	labRoleEnv   = "REMORA_NODELAB_ROLE"   // the node's name: relay, a, b
	labDirEnv    = "REMORA_NODELAB_DIR"    // the lab's folder: shared/, state, sockets
	labListenEnv = "REMORA_NODELAB_LISTEN" // comma-separated listen multiaddrs
	labRelayEnv  = "REMORA_NODELAB_RELAY"  // "1": offer to relay for members
	labForceEnv  = "REMORA_NODELAB_FORCE"  // forced reachability (public|private), else AutoNAT
	labNoMDNSEnv = "REMORA_NODELAB_NOMDNS" // "1": no mDNS box (the daemon's default runs it on private networks)
	// labPrefixEnv names the lab's namespaces (default "nat"), so that
	// several people sharing one machine can tell theirs apart
	labPrefixEnv = "REMORA_NATLAB_PREFIX"
)

func TestMain(m *testing.M) {
	if os.Getenv(labRoleEnv) != "" {
		os.Exit(labNodeMain())
	}
	os.Exit(m.Run())
}

// labNodeMain runs one lab node until SIGTERM; it returns the exit code.
func labNodeMain() int {
	testenv.UnlockTestNet3()
	role, labDir := os.Getenv(labRoleEnv), os.Getenv(labDirEnv)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", role)
	if err := runLabNode(role, labDir, log); err != nil {
		log.Error("lab node failed", "err", err)
		return 1
	}
	return 0
}

func runLabNode(role, labDir string, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	state := filepath.Join(labDir, role)
	ch, err := dirChannel(ctx, filepath.Join(labDir, "shared"), state, 0, log)
	if err != nil {
		return err
	}
	defer ch.Close()
	opts, db, err := testOptions(role, state, ch, log, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	opts.ListenAddrs = strings.Split(os.Getenv(labListenEnv), ",")
	opts.PresenceInterval = 2 * time.Second
	opts.Boxes = Boxes{RelayList: RelayList{Off: true}}
	if os.Getenv(labRelayEnv) == "1" {
		opts.Relay, opts.RelayUptime = &transport.RelayOptions{}, time.Millisecond
	}
	opts.ForceReachability = transport.Reachability(os.Getenv(labForceEnv))
	if os.Getenv(labNoMDNSEnv) != "1" {
		// the daemon's default, with the lab's LANs as private networks
		opts.LAN = &lan.Policy{Mode: lan.Auto, Private: []netip.Prefix{
			netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.0/24")}}
	}
	n, err := New(ctx, opts)
	if err != nil {
		return err
	}
	ln, err := api.Listen(filepath.Join(labDir, role+".sock"))
	if err != nil {
		n.Close()
		return err
	}
	go api.Serve(ctx, ln, n, log)
	return n.Run(ctx)
}

// natKind is how one side of a cell reaches the lab's internet.
type natKind string

const (
	natPublic  natKind = "public" // a public address on the host itself
	natFull    natKind = "fc"     // full cone: EIM, no filtering
	natAddr    natKind = "ar"     // address-restricted cone: EIM, filtered by remote IP
	natPort    natKind = "pr"     // port-restricted cone: EIM, filtered by remote IP and port
	natSym     natKind = "sym"    // symmetric: a new random port per destination
	natUDPOff  natKind = "udpoff" // port-restricted, and UDP blocked (TCP only)
	natDouble  natKind = "double" // port-restricted home router behind a port-restricted carrier NAT
	natSame    natKind = "same"   // b sits in a's LAN (same NAT); see natCell.hairpin
	labLANPort         = 4001
)

// natLab is one set of namespaces for one cell.
type natLab struct {
	prefix string
	script bytes.Buffer
	ns     []string
}

// newNATLab builds the namespaces of a cell: the "internet" (a bridge),
// the relay host 203.0.113.10, and sides a and b.
func newNATLab(t testing.TB, a, b natKind, hairpin bool) *natLab {
	t.Helper()
	var rnd [2]byte
	rand.Read(rnd[:])
	prefix := cmp.Or(os.Getenv(labPrefixEnv), "nat")
	l := &natLab{prefix: prefix + hex.EncodeToString(rnd[:])}
	t.Cleanup(l.down)
	fmt.Fprintf(&l.script, "set -e\nx() { ip netns exec \"$@\"; }\n")
	inet := l.netns("i")
	l.sh("x %s ip link add br0 type bridge && x %s ip link set br0 up", inet, inet)
	l.host("r", "203.0.113.10/24", "") // the relay member's host
	l.side("a", a, "203.0.113.1", "203.0.113.21", "192.0.2", hairpin)
	switch b {
	case natSame:
		// b joins a's LAN (the router's "lan" bridge).
		l.attach(l.name("ra"), "b", "192.0.2.11/24", "192.0.2.1")
	default:
		l.side("b", b, "203.0.113.2", "203.0.113.22", "198.51.100", false)
	}
	cmd := exec.Command("bash", "-c", l.script.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the NAT lab: %v\n%s\nscript:\n%s", err, out, l.script.String())
	}
	return l
}

func (l *natLab) name(s string) string { return l.prefix + "-" + s }

func (l *natLab) sh(format string, args ...any) {
	fmt.Fprintf(&l.script, format+"\n", args...)
}

// netns adds a namespace with loopback up and IPv6 off.
func (l *natLab) netns(s string) string {
	n := l.name(s)
	l.ns = append(l.ns, n)
	l.sh("ip netns add %s && x %s ip link set lo up", n, n)
	l.sh("x %s sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1", n)
	return n
}

// host adds a host namespace on the internet bridge with address cidr.
func (l *natLab) host(s, cidr, gw string) string {
	n := l.netns(s)
	inet := l.name("i")
	l.sh("ip link add eth0 netns %s type veth peer name v%s netns %s", n, s, inet)
	l.sh("x %s ip link set dev v%s master br0 up", inet, s)
	l.sh("x %s ip addr add %s dev eth0 && x %s ip link set eth0 up", n, cidr, n)
	if gw != "" {
		l.sh("x %s ip route add default via %s", n, gw)
	}
	return n
}

// attach adds host namespace s to router ns's "lan" bridge.
func (l *natLab) attach(router, s, cidr, gw string) {
	n := l.netns(s)
	l.sh("ip link add eth0 netns %s type veth peer name h%s netns %s", n, s, router)
	l.sh("x %s ip link set dev h%s master lan up", router, s)
	l.sh("x %s ip addr add %s dev eth0 && x %s ip link set eth0 up", n, cidr, n)
	l.sh("x %s ip route add default via %s", n, gw)
}

// router adds a NAT router namespace: "wan" on the internet bridge (or, with
// upstream set, on that router's lan) and a "lan" bridge.
func (l *natLab) router(s, wan, lanCIDR, upstream, gw string) string {
	n := l.netns(s)
	up, upBridge := l.name("i"), "br0"
	if upstream != "" {
		up, upBridge = upstream, "lan"
	}
	l.sh("ip link add wan netns %s type veth peer name w%s netns %s", n, s, up)
	l.sh("x %s ip link set dev w%s master %s up", up, s, upBridge)
	l.sh("x %s ip addr add %s dev wan && x %s ip link set wan up", n, wan, n)
	if gw != "" {
		l.sh("x %s ip route add default via %s", n, gw)
	}
	l.sh("x %s ip link add lan type bridge && x %s ip addr add %s dev lan && x %s ip link set lan up", n, n, lanCIDR, n)
	return n
}

// side builds side s ("a" or "b") of kind k; wanIP is its router's public
// address, pubIP the host's own when it is public, net24 its LAN's /24.
func (l *natLab) side(s string, k natKind, wanIP, pubIP, net24 string, hairpin bool) {
	hostIP := net24 + ".10"
	switch k {
	case natPublic:
		l.host(s, pubIP+"/24", "")
		return
	case natDouble:
		// carrier NAT on the public address, home router on the carrier's
		// /25, the host on the home router's /25.
		cgn := l.router("c"+s, wanIP+"/24", net24+".129/25", "", "")
		l.nat(cgn, natPort, net24+".130", false)
		rt := l.router("r"+s, net24+".130/25", net24+".1/25", cgn, net24+".129")
		l.nat(rt, natPort, hostIP, false)
		l.attach(rt, s, hostIP+"/25", net24+".1")
		return
	}
	rt := l.router("r"+s, wanIP+"/24", net24+".1/24", "", "")
	l.nat(rt, k, hostIP, hairpin)
	l.attach(rt, s, hostIP+"/24", net24+".1")
}

// nat sets router n's rules for kind k; host is the LAN host a full-cone or
// address-restricted NAT forwards unsolicited packets to.
func (l *natLab) nat(n string, k natKind, host string, hairpin bool) {
	ipt := func(rule string) { l.sh("x %s iptables %s", n, rule) }
	l.sh("x %s sysctl -qw net.ipv4.ip_forward=1", n)
	if k == natSym {
		ipt("-t nat -A POSTROUTING -o wan -j MASQUERADE --random-fully")
	} else {
		ipt("-t nat -A POSTROUTING -o wan -j MASQUERADE")
	}
	ipt("-P FORWARD DROP")
	if k == natUDPOff {
		ipt("-A FORWARD -i lan -o wan -p udp -j DROP")
	}
	ipt("-A FORWARD -i lan -o wan -j ACCEPT")
	// the LAN is a switch: with br_netfilter loaded, bridged frames cross
	// this chain too, and a home router does not filter them
	ipt("-A FORWARD -i lan -o lan -j ACCEPT")
	ipt("-A FORWARD -i wan -o lan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT")
	switch k {
	case natFull:
		ipt("-t nat -A PREROUTING -i wan -j DNAT --to-destination " + host)
		ipt("-A FORWARD -i wan -o lan -m conntrack --ctstate DNAT -j ACCEPT")
	case natAddr:
		// remember every remote address the LAN sent to; admit unsolicited
		// packets from those addresses only, whatever their port
		ipt("-t mangle -A FORWARD -i lan -o wan -m recent --name out --rdest --set")
		ipt("-t nat -A PREROUTING -i wan -m recent --name out --rsource --rcheck -j DNAT --to-destination " + host)
		ipt("-A FORWARD -i wan -o lan -m conntrack --ctstate DNAT -j ACCEPT")
	}
	if hairpin {
		// NAT loopback, as home routers do it: LAN hosts reaching the
		// public address of a LAN host's mapping (the lab pins each
		// host's port) come back in, source-NATed through the router.
		wan := "203.0.113.1"
		for i, ip := range []string{"192.0.2.10", "192.0.2.11"} {
			for _, proto := range []string{"tcp", "udp"} {
				ipt(fmt.Sprintf("-t nat -A PREROUTING -i lan -d %s -p %s --dport %d -j DNAT --to-destination %s", wan, proto, labLANPort+i, ip))
			}
		}
		ipt("-t nat -A POSTROUTING -o lan -s 192.0.2.0/24 -d 192.0.2.0/24 -m conntrack --ctstate DNAT -j MASQUERADE")
	}
	ipt("-A INPUT -i lo -j ACCEPT")
	ipt("-A INPUT -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT")
	ipt("-A INPUT -i wan -j DROP")
}

// down deletes the lab's namespaces (its nodes were stopped before).
func (l *natLab) down() {
	for _, n := range slices.Backward(l.ns) {
		exec.Command("ip", "netns", "del", n).Run()
	}
}

// labNode is one running lab node, driven through its API socket.
type labNode struct {
	name string
	cmd  *exec.Cmd
	log  *testenv.Buffer
	api  *api.Client
	id   string
}

// start runs a lab node in namespace ns.
func (l *natLab) start(t testing.TB, labDir, role string, port int, extra ...string) *labNode {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ln := &labNode{name: role, log: &testenv.Buffer{}, api: api.NewClient(filepath.Join(labDir, role+".sock"))}
	ln.cmd = exec.Command("ip", "netns", "exec", l.name(role), exe, "-test.run=^$")
	ln.cmd.Env = append(os.Environ(), labRoleEnv+"="+role, labDirEnv+"="+labDir,
		labListenEnv+"="+fmt.Sprintf("/ip4/0.0.0.0/udp/%d/quic-v1,/ip4/0.0.0.0/tcp/%d", port, port))
	ln.cmd.Env = append(ln.cmd.Env, extra...)
	ln.cmd.Stdout, ln.cmd.Stderr = ln.log, ln.log
	if err := ln.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", role, err)
	}
	t.Cleanup(func() { ln.stop(t) })
	testenv.WaitFor(t, role+" answering", 60*time.Second, func() bool {
		st, err := ln.api.Status(context.Background())
		if err == nil && st.Ready {
			ln.id = st.PeerID
		}
		return err == nil && st.Ready
	})
	return ln
}

// stop ends the node (only the process this test started, by pid) and
// shows its log tail when the test failed.
func (ln *labNode) stop(t testing.TB) {
	if ln.cmd.ProcessState == nil {
		ln.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { ln.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			ln.cmd.Process.Kill()
			<-done
		}
	}
	if t.Failed() || os.Getenv("REMORA_TEST_LOG") != "" {
		b := ln.log.Bytes()
		if len(b) > 12<<10 && os.Getenv("REMORA_TEST_LOG") == "" {
			b = b[len(b)-12<<10:]
		}
		t.Logf("--- %s's log:\n%s", ln.name, b)
	}
}

// peerPath is ln's path to peer ("none" if it does not know it yet).
func (ln *labNode) peerPath(peerID string) string {
	if p, ok := ln.peer(peerID); ok {
		return p.Path
	}
	return "none"
}

// peer returns ln's entry for peerID, if it lists one.
func (ln *labNode) peer(peerID string) (api.Peer, bool) {
	ps, err := ln.api.Peers(context.Background())
	if err != nil {
		return api.Peer{}, false
	}
	for _, p := range ps {
		if p.PeerID == peerID {
			return p, true
		}
	}
	return api.Peer{}, false
}
