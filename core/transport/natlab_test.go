package transport_test

// The namespace NAT lab (DESIGN.md "Testing against the real thing", NAT):
// a relay on a "public" host and two members behind Linux NAT routers, all
// in network namespaces this test creates (unique prefix) and deletes, with
// RFC 5737 documentation addresses only and no route out. Each peer is this
// test binary re-executed inside its namespace (labHelperMain); they meet
// through files in a shared directory, as they would through a channel.

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
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
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/remora-p2p/remora/core/transport"
	"github.com/remora-p2p/remora/testenv"
)

const (
	labRoleEnv = "REMORA_NATLAB_ROLE" // relay | a | b: run as a lab peer
	labDirEnv  = "REMORA_NATLAB_DIR"  // rendezvous directory
	labModeEnv = "REMORA_NATLAB_MODE" // dcutr | simconnect
	labWaitEnv = "REMORA_NATLAB_WAIT" // how long b waits for a direct path
)

// labResult is what peer b reports.
type labResult struct {
	First     transport.Path `json:"first"`      // path right after Connect
	Final     transport.Path `json:"final"`      // path at the end
	UpgradeMS int64          `json:"upgrade_ms"` // from the relayed connect to the direct path
	// the EventPathChanged that announced the upgrade, "prev->new"
	UpgradeEvent string            `json:"upgrade_event"`
	SendErr      string            `json:"send_err"` // Send with ack at the end
	NAT          transport.NATType `json:"nat"`      // b's NAT type hint at the end
	Err          string            `json:"err"`
}

func TestNATLab(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the NAT lab needs Linux network namespaces")
	}
	testenv.NeedNATLab(t)
	tests := []struct {
		name, natA, natB, mode string
		wait                   time.Duration
		want                   transport.Path
		wantNAT                transport.NATType // b's hint, from two public observers
	}{
		{"eim-eim/dcutr", "eim", "eim", "dcutr", 30 * time.Second, transport.PathPunched, transport.NATCone},
		{"eim-eim/simconnect", "eim", "eim", "simconnect", 20 * time.Second, transport.PathPunched, transport.NATCone},
		{"sym-sym/dcutr", "sym", "sym", "dcutr", 12 * time.Second, transport.PathRelayed, transport.NATSymmetric},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runLab(t, tt.natA, tt.natB, tt.mode, tt.wait)
			t.Logf("result: %+v", res)
			if res.Err != "" {
				t.Fatalf("lab peer b: %s", res.Err)
			}
			if tt.mode == "dcutr" && res.First != transport.PathRelayed {
				t.Errorf("first path %s, want relayed (b knew only a's relay address)", res.First)
			}
			if tt.mode == "dcutr" && tt.want == transport.PathPunched && res.UpgradeEvent != "relayed->punched" {
				t.Errorf("upgrade event %q, want relayed->punched", res.UpgradeEvent)
			}
			if res.Final != tt.want {
				t.Errorf("final path %s, want %s", res.Final, tt.want)
			}
			if res.NAT != tt.wantNAT {
				t.Errorf("NAT type hint %s, want %s", res.NAT, tt.wantNAT)
			}
			if res.SendErr != "" {
				t.Errorf("Send with ack over the %s path: %s", res.Final, res.SendErr)
			}
		})
	}
}

// runLab builds a lab, runs relay, a and b in it, and returns b's result.
func runLab(t *testing.T, natA, natB, mode string, wait time.Duration) labResult {
	t.Helper()
	var rnd [2]byte
	rand.Read(rnd[:])
	prefix := "rl" + hex.EncodeToString(rnd[:])
	script, err := filepath.Abs("testdata/natlab.sh")
	if err != nil {
		t.Fatal(err)
	}
	lab := func(args ...string) error {
		cmd := exec.Command("bash", append([]string{script}, args...)...)
		cmd.Env = append(os.Environ(), "NATLAB_PREFIX="+prefix)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("natlab.sh %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	t.Cleanup(func() {
		if err := lab("down"); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	if err := lab("up", natA, natB); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keys := map[string]string{}
	for _, role := range []string{"relay", "observer", "a", "b"} {
		_, k, _ := ed25519.GenerateKey(rand.Reader)
		keys[role] = hex.EncodeToString(k)
	}
	writeJSON(t, filepath.Join(dir, "keys.json"), keys)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ns := map[string]string{"relay": prefix + "-pub", "a": prefix + "-a", "b": prefix + "-b"}
	var procs []*exec.Cmd
	t.Cleanup(func() {
		for _, p := range procs { // only the processes this test started, by pid
			if p.ProcessState == nil {
				p.Process.Signal(syscall.SIGTERM)
				done := make(chan struct{})
				go func() { p.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(5 * time.Second):
					p.Process.Kill()
					<-done
				}
			}
		}
	})
	for _, role := range []string{"relay", "a", "b"} {
		cmd := exec.Command("ip", "netns", "exec", ns[role], exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), labRoleEnv+"="+role, labDirEnv+"="+dir, labModeEnv+"="+mode, labWaitEnv+"="+wait.String())
		logf, err := os.Create(filepath.Join(dir, role+".log"))
		if err != nil {
			t.Fatal(err)
		}
		defer logf.Close()
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", role, err)
		}
		procs = append(procs, cmd)
	}
	var res labResult
	if err := waitJSON(filepath.Join(dir, "result.json"), wait+60*time.Second, &res); err != nil {
		for _, role := range []string{"relay", "a", "b"} {
			log, _ := os.ReadFile(filepath.Join(dir, role+".log"))
			t.Logf("--- %s log:\n%s", role, log)
		}
		t.Fatalf("no result from b: %v", err)
	}
	if os.Getenv("REMORA_TRANSPORT_DEBUG") != "" {
		for _, role := range []string{"relay", "a", "b"} {
			log, _ := os.ReadFile(filepath.Join(dir, role+".log"))
			t.Logf("--- %s log:\n%s", role, log)
		}
	}
	return res
}

func writeJSON(t testing.TB, path string, v any) {
	if err := writeJSONFile(path, v); err != nil {
		t.Fatal(err)
	}
}

// writeJSONFile writes atomically (rename), so readers never see half a file.
func writeJSONFile(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func waitJSON(path string, timeout time.Duration, v any) error {
	deadline := time.Now().Add(timeout)
	for {
		b, err := os.ReadFile(path)
		if err == nil {
			return json.Unmarshal(b, v)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for %s: %w", filepath.Base(path), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// labHelperMain runs one lab peer; it returns the process exit code.
func labHelperMain() int {
	role, dir := os.Getenv(labRoleEnv), os.Getenv(labDirEnv)
	wait, _ := time.ParseDuration(os.Getenv(labWaitEnv))
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("role", role)
	var err error
	if os.Getenv(labModeEnv) == "mdns" {
		err = mdnsPeer(role, dir, log)
	} else {
		testenv.UnlockTestNet3()
		err = labPeer(role, dir, os.Getenv(labModeEnv), wait, log)
	}
	if err != nil {
		log.Error("lab peer failed", "err", err)
		if role == "b" || role == "m2" {
			writeJSONFile(filepath.Join(dir, "result.json"), labResult{Err: err.Error()})
		}
		return 1
	}
	return 0
}

type labInfo struct {
	ID    string   `json:"id"`
	Addrs []string `json:"addrs"` // what a channel would carry
}

func labPeer(role, dir, mode string, wait time.Duration, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), wait+50*time.Second)
	defer cancel()
	var keysHex map[string]string
	if err := waitJSON(filepath.Join(dir, "keys.json"), 5*time.Second, &keysHex); err != nil {
		return err
	}
	ids := map[string]peer.ID{}
	keys := map[string]ed25519.PrivateKey{}
	for r, h := range keysHex {
		k, err := hex.DecodeString(h)
		if err != nil {
			return err
		}
		keys[r] = k
		sk, err := crypto.UnmarshalEd25519PrivateKey(k)
		if err != nil {
			return err
		}
		if ids[r], err = peer.IDFromPrivateKey(sk); err != nil {
			return err
		}
	}
	allow := func(p peer.ID) bool {
		return p == ids["relay"] || p == ids["observer"] || p == ids["a"] || p == ids["b"]
	}
	o := transport.Options{
		Identity: keys[role],
		Allow:    allow,
		Logger:   log,
	}
	if role == "relay" {
		o.ListenAddrs = []string{"/ip4/203.0.113.10/udp/4001/quic-v1", "/ip4/203.0.113.10/tcp/4001"}
		o.RelayService = &transport.RelayOptions{}
		o.ForceReachability = transport.ReachabilityPublic
		tr, err := transport.New(ctx, o)
		if err != nil {
			return err
		}
		defer tr.Close()
		var as []string
		for _, a := range tr.Addrs() {
			as = append(as, a.Multiaddr.String())
		}
		// A second public host (another port: a symmetric NAT maps each
		// destination port anew) so that peers have two observers.
		oo := o
		oo.Identity, oo.RelayService = keys["observer"], nil
		oo.ListenAddrs = []string{"/ip4/203.0.113.10/udp/4002/quic-v1", "/ip4/203.0.113.10/tcp/4002"}
		obs, err := transport.New(ctx, oo)
		if err != nil {
			return err
		}
		defer obs.Close()
		var os []string
		for _, a := range obs.Addrs() {
			os = append(os, a.Multiaddr.String())
		}
		if err := writeJSONFile(filepath.Join(dir, "observer.json"), labInfo{ID: obs.ID().String(), Addrs: os}); err != nil {
			return err
		}
		if err := writeJSONFile(filepath.Join(dir, "relay.json"), labInfo{ID: tr.ID().String(), Addrs: as}); err != nil {
			return err
		}
		return waitDone(ctx, dir)
	}

	var ri labInfo
	if err := waitJSON(filepath.Join(dir, "relay.json"), 10*time.Second, &ri); err != nil {
		return err
	}
	relay := peer.AddrInfo{ID: ids["relay"]}
	for _, s := range ri.Addrs {
		relay.Addrs = append(relay.Addrs, ma.StringCast(s))
	}
	o.ListenAddrs = []string{"/ip4/0.0.0.0/udp/4001/quic-v1", "/ip4/0.0.0.0/tcp/4001"}
	o.StaticRelays = []peer.AddrInfo{relay}
	o.EnableHolePunching = true
	tr, err := transport.New(ctx, o)
	if err != nil {
		return err
	}
	defer tr.Close()
	var obi labInfo
	if err := waitJSON(filepath.Join(dir, "observer.json"), 10*time.Second, &obi); err != nil {
		return err
	}
	var obAddrs []ma.Multiaddr
	for _, s := range obi.Addrs {
		obAddrs = append(obAddrs, ma.StringCast(s))
	}
	tr.AddAddrs(ids["observer"], obAddrs, peerstore.PermanentAddrTTL)
	if _, err := tr.Connect(ctx, ids["observer"]); err != nil {
		return fmt.Errorf("connect to the observer: %w", err)
	}
	got := make(chan []byte, 1)
	tr.Handle(func(_ context.Context, _ peer.ID, msg []byte) error {
		select {
		case got <- msg:
		default:
		}
		return nil
	})

	// Publish what a channel would carry: relay addresses for dcutr, the
	// observed public address for a probe window; never LAN addresses.
	var publish []string
	deadline := time.Now().Add(20 * time.Second)
	for len(publish) == 0 && time.Now().Before(deadline) {
		for _, a := range tr.Addrs() {
			switch {
			case a.Kind == transport.AddrLAN:
			case mode == "dcutr" && a.Kind == transport.AddrRelay,
				mode == "simconnect" && a.Kind == transport.AddrObserved:
				publish = append(publish, a.Multiaddr.String())
			}
		}
		if len(publish) == 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if len(publish) == 0 {
		return fmt.Errorf("no %s address to publish after 20 s: %v", mode, tr.Addrs())
	}
	log.Info("publishing", "addrs", publish)
	if err := writeJSONFile(filepath.Join(dir, role+".json"), labInfo{ID: tr.ID().String(), Addrs: publish}); err != nil {
		return err
	}
	other := map[string]string{"a": "b", "b": "a"}[role]
	var oi labInfo
	if err := waitJSON(filepath.Join(dir, other+".json"), 30*time.Second, &oi); err != nil {
		return err
	}
	var oaddrs []ma.Multiaddr
	for _, s := range oi.Addrs {
		oaddrs = append(oaddrs, ma.StringCast(s))
	}
	tr.AddAddrs(ids[other], oaddrs, peerstore.TempAddrTTL)

	switch {
	case mode == "simconnect":
		// Both sides spray for the same window, as a probe window agreed
		// over a channel would have them do.
		wctx, wcancel := context.WithTimeout(ctx, wait)
		start := time.Now()
		path, err := tr.SimultaneousConnect(wctx, ids[other])
		wcancel()
		if role == "a" {
			if err != nil {
				log.Warn("simultaneous connect", "err", err)
			}
			return waitDone(ctx, dir)
		}
		res := labResult{First: path, Final: tr.PathTo(ids[other]), UpgradeMS: time.Since(start).Milliseconds(), NAT: tr.NATType()}
		if err != nil {
			res.Err = err.Error()
		}
		res.SendErr = labSend(ctx, tr, ids[other])
		return finish(dir, res)
	case role == "a":
		return waitDone(ctx, dir)
	}

	// dcutr, peer b: connect through the relay, then wait for the upgrade.
	start := time.Now()
	first, err := tr.Connect(ctx, ids["a"])
	if err != nil {
		return fmt.Errorf("connect through the relay: %w", err)
	}
	res := labResult{First: first}
	timeout := time.After(wait)
wait:
	for {
		select {
		case e := <-tr.Events():
			if e.Kind == transport.EventPathChanged && e.Peer == ids["a"] && e.Path.IsDirect() {
				res.UpgradeMS = time.Since(start).Milliseconds()
				res.UpgradeEvent = string(e.Prev) + "->" + string(e.Path)
				break wait
			}
		case <-timeout:
			break wait
		}
	}
	res.Final = tr.PathTo(ids["a"])
	res.SendErr = labSend(ctx, tr, ids["a"])
	res.NAT = tr.NATType()
	return finish(dir, res)
}

func labSend(ctx context.Context, tr *transport.Transport, to peer.ID) string {
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := tr.Send(sctx, to, []byte("hello through the lab")); err != nil {
		return err.Error()
	}
	return ""
}

func finish(dir string, res any) error {
	if err := writeJSONFile(filepath.Join(dir, "result.json"), res); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "done"), nil, 0o600)
}

// waitDone keeps a peer up until b has reported, or ctx ends.
func waitDone(ctx context.Context, dir string) error {
	for {
		if _, err := os.Stat(filepath.Join(dir, "done")); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil
			}
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
