package transport_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/remora-p2p/remora/core/lan"
	"github.com/remora-p2p/remora/core/transport"
	"github.com/remora-p2p/remora/testenv"
)

// TestMDNSLab: two members on one LAN find each other by mDNS (core/lan's
// sealed announcements) and talk, and a third node on the same LAN,
// announcing for another circle, is never read. The LAN is a
// bridge in network namespaces this test creates (documentation addresses,
// no route out), because mDNS multicasts and must not reach the host's real
// networks.
func TestMDNSLab(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the mDNS lab needs Linux network namespaces")
	}
	if testing.Short() {
		t.Skip("natlab: skipped in -short mode")
	}
	var rnd [2]byte
	rand.Read(rnd[:])
	prefix, roles := "rl"+hex.EncodeToString(rnd[:]), []string{"m1", "m2", "stranger"}
	testenv.BridgeLAN(t, prefix, roles...)
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
	// When m2 has met m1, m1's network changes (a new address, as on
	// another LAN): its announcement must come under another name.
	var first struct{ Name string }
	if err := waitJSON(filepath.Join(dir, "met.json"), 60*time.Second, &first); err == nil {
		if out, err := exec.Command("ip", "netns", "exec", prefix+"-m1", "ip", "addr", "add", "192.0.2.50/24", "dev", "eth0").CombinedOutput(); err != nil {
			t.Fatalf("move m1: %v\n%s", err, out)
		}
		writeJSON(t, filepath.Join(dir, "moved.json"), first)
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
	if !res.StrangerSeen {
		t.Error("m2 never read the stranger's announcement: the check that it is ignored proved nothing")
	}
	if res.Path != transport.PathLAN {
		t.Errorf("path %s, want lan", res.Path)
	}
	if res.FirstName == "" || res.MovedName == "" || res.FirstName == res.MovedName {
		t.Errorf("m1's instance name before and after its network changed: %q, %q; want two different names", res.FirstName, res.MovedName)
	}
}

type mdnsResult struct {
	FoundMember   bool           `json:"found_member"`
	FoundStranger bool           `json:"found_stranger"`
	StrangerSeen  bool           `json:"stranger_seen"`
	FirstName     string         `json:"first_name"`
	MovedName     string         `json:"moved_name"`
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
	})
	if err != nil {
		return err
	}
	defer tr.Close()
	tr.Handle(func(context.Context, peer.ID, []byte) error { return nil })
	// m1 and m2 share a circle's key; the stranger seals under its own.
	circleKey, strangerKey := [32]byte{1}, [32]byte{2}
	key := circleKey
	if role == "stranger" {
		key = strangerKey
	}
	found := make(chan lan.Announcement, 16)
	svc := lan.New(lan.Options{
		Self:     ids[role],
		Policy:   lan.Policy{Mode: lan.Auto, Private: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}},
		SealKeys: func() [][32]byte { return [][32]byte{key} },
		OpenKeys: func() [][32]byte { return [][32]byte{key} },
		Addrs: func() []ma.Multiaddr {
			var out []ma.Multiaddr
			for _, a := range tr.Addrs() {
				out = append(out, a.Multiaddr)
			}
			return out
		},
		Found:  func(a lan.Announcement) { found <- a },
		Check:  time.Second,
		Logger: log,
	})
	go svc.Run(ctx)
	if role != "m2" {
		return waitDone(ctx, dir)
	}
	var res mdnsResult
	var m1 lan.Announcement
	deadline := time.After(20 * time.Second)
	for !res.FoundMember {
		select {
		case a := <-found:
			if a.Peer == ids["m1"] {
				res.FoundMember, m1 = true, a
			}
			res.FoundStranger = res.FoundStranger || a.Peer == ids["stranger"]
		case <-deadline:
			return finish(dir, res)
		}
	}
	// Found: the addresses came sealed in m1's announcement; no address was
	// handed over by anyone.
	tr.AddAddrs(ids["m1"], m1.Addrs, time.Minute)
	res.Path, err = tr.Connect(ctx, ids["m1"])
	if err == nil {
		err = tr.Send(ctx, ids["m1"], []byte("hello, neighbour"))
	}
	if err != nil {
		res.Err = err.Error()
	}
	// m1 moves to another network (the test adds an address): its
	// announcement comes under a name not seen before.
	res.FirstName = m1.Instance
	if err := writeJSONFile(filepath.Join(dir, "met.json"), struct{ Name string }{m1.Instance}); err != nil {
		return err
	}
	var moved struct{ Name string }
	if err := waitJSON(filepath.Join(dir, "moved.json"), 20*time.Second, &moved); err != nil {
		return err
	}
	for res.MovedName == "" {
		select {
		case a := <-found:
			if a.Peer == ids["m1"] && a.Instance != res.FirstName {
				res.MovedName = a.Instance
			}
			res.FoundStranger = res.FoundStranger || a.Peer == ids["stranger"]
		case <-time.After(30 * time.Second):
			return finish(dir, res)
		}
	}
	// Wait for the stranger's announcement too (read, not opened).
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		if seen, opened := svc.Counts(); seen > opened {
			res.StrangerSeen = true
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for {
		select {
		case a := <-found:
			res.FoundStranger = res.FoundStranger || a.Peer == ids["stranger"]
			continue
		default:
		}
		break
	}
	return finish(dir, res)
}
