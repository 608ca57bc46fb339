package transport_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/remora-p2p/remora/core/transport"
	"github.com/remora-p2p/remora/testenv"
)

// TestMDNSLab: two members on one LAN find each other by mDNS and talk, and
// a third node on the same LAN that is not a member is ignored. The LAN is a
// bridge in network namespaces this test creates (documentation addresses,
// no route out), because mDNS multicasts and must not reach the host's real
// networks.
func TestMDNSLab(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the mDNS lab needs Linux network namespaces")
	}
	if os.Geteuid() != 0 {
		testenv.Missing(t, "natlab", "not root (network namespaces need root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		testenv.Missing(t, "natlab", "ip not installed (testenv/svc-natlab.sh up installs it)")
	}
	if testing.Short() {
		t.Skip("natlab: skipped in -short mode")
	}
	var rnd [2]byte
	rand.Read(rnd[:])
	prefix := "rl" + hex.EncodeToString(rnd[:])
	lan, roles := prefix+"-lan", []string{"m1", "m2", "stranger"}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() {
		for _, ns := range append([]string{lan}, nsNames(prefix, roles)...) {
			exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	run("ip", "netns", "add", lan)
	run("ip", "netns", "exec", lan, "ip", "link", "add", "br0", "type", "bridge")
	run("ip", "netns", "exec", lan, "ip", "link", "set", "br0", "up")
	for i, role := range roles {
		ns := prefix + "-" + role
		run("ip", "netns", "add", ns)
		run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
		run("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", role, "netns", lan)
		run("ip", "netns", "exec", lan, "ip", "link", "set", role, "master", "br0", "up")
		run("ip", "netns", "exec", ns, "ip", "addr", "add", fmt.Sprintf("192.0.2.%d/24", 10+i), "dev", "eth0")
		run("ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up")
		// multicast stays on this LAN; there is no other route at all
		run("ip", "netns", "exec", ns, "ip", "route", "add", "224.0.0.0/4", "dev", "eth0")
	}
	dir := t.TempDir()
	keys := map[string]string{}
	for _, role := range roles {
		_, k, _ := ed25519.GenerateKey(rand.Reader)
		keys[role] = hex.EncodeToString(k)
	}
	writeJSON(t, filepath.Join(dir, "keys.json"), keys)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var procs []*exec.Cmd
	t.Cleanup(func() {
		for _, p := range procs { // only what this test started, by pid
			p.Process.Signal(syscall.SIGTERM)
			p.Wait()
		}
	})
	for _, role := range roles {
		cmd := exec.Command("ip", "netns", "exec", prefix+"-"+role, exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), labRoleEnv+"="+role, labDirEnv+"="+dir, labModeEnv+"=mdns", labWaitEnv+"=20s")
		logf, err := os.Create(filepath.Join(dir, role+".log"))
		if err != nil {
			t.Fatal(err)
		}
		defer logf.Close()
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, cmd)
	}
	var res mdnsResult
	if err := waitJSON(filepath.Join(dir, "result.json"), 60*time.Second, &res); err != nil {
		for _, role := range roles {
			log, _ := os.ReadFile(filepath.Join(dir, role+".log"))
			t.Logf("--- %s log:\n%s", role, log)
		}
		t.Fatalf("no result from m2: %v", err)
	}
	t.Logf("result: %+v", res)
	if res.Err != "" {
		t.Fatal(res.Err)
	}
	if !res.FoundMember {
		t.Error("m2 did not find m1 by mDNS")
	}
	if res.FoundStranger {
		t.Error("m2 reported the non-member on its LAN")
	}
	if res.Path != transport.PathLAN {
		t.Errorf("path %s, want lan", res.Path)
	}
}

func nsNames(prefix string, roles []string) []string {
	var out []string
	for _, r := range roles {
		out = append(out, prefix+"-"+r)
	}
	return out
}

type mdnsResult struct {
	FoundMember   bool           `json:"found_member"`
	FoundStranger bool           `json:"found_stranger"`
	Path          transport.Path `json:"path"`
	Err           string         `json:"err"`
}

// mdnsPeer runs one node of TestMDNSLab. m1 and m2 are members of each
// other; the stranger admits everyone but is admitted by nobody.
func mdnsPeer(role, dir string, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	var keysHex map[string]string
	if err := waitJSON(filepath.Join(dir, "keys.json"), 5*time.Second, &keysHex); err != nil {
		return err
	}
	ids, keys := map[string]peer.ID{}, map[string]ed25519.PrivateKey{}
	for r, h := range keysHex {
		k, err := hex.DecodeString(h)
		if err != nil {
			return err
		}
		sk, err := crypto.UnmarshalEd25519PrivateKey(k)
		if err != nil {
			return err
		}
		keys[r] = k
		if ids[r], err = peer.IDFromPrivateKey(sk); err != nil {
			return err
		}
	}
	allow := func(p peer.ID) bool { return p == ids["m1"] || p == ids["m2"] }
	if role == "stranger" {
		allow = func(peer.ID) bool { return true }
	}
	tr, err := transport.New(ctx, transport.Options{
		Identity:    keys[role],
		ListenAddrs: []string{"/ip4/0.0.0.0/udp/0/quic-v1", "/ip4/0.0.0.0/tcp/0"},
		Allow:       allow,
		Logger:      log,
		MDNS:        true,
	})
	if err != nil {
		return err
	}
	defer tr.Close()
	tr.Handle(func(context.Context, peer.ID, []byte) error { return nil })
	if role != "m2" {
		return waitDone(ctx, dir)
	}
	var res mdnsResult
	deadline := time.After(20 * time.Second)
	for !res.FoundMember {
		select {
		case e := <-tr.Events():
			if e.Kind == transport.EventPeerFound {
				res.FoundMember = res.FoundMember || e.Peer == ids["m1"]
				res.FoundStranger = res.FoundStranger || e.Peer == ids["stranger"]
			}
		case <-deadline:
			return finish(dir, res)
		}
	}
	// Found: m1's LAN addresses are in the transport now; no address was
	// handed over by anyone.
	res.Path, err = tr.Connect(ctx, ids["m1"])
	if err == nil {
		err = tr.Send(ctx, ids["m1"], []byte("hello, neighbour"))
	}
	if err != nil {
		res.Err = err.Error()
	}
	// Give the stranger's announcements time to arrive too.
	time.Sleep(2 * time.Second)
	for {
		select {
		case e := <-tr.Events():
			res.FoundStranger = res.FoundStranger || (e.Kind == transport.EventPeerFound && e.Peer == ids["stranger"])
			continue
		default:
		}
		break
	}
	return finish(dir, res)
}
