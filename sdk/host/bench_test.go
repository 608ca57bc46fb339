package host_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/host"
	"github.com/remora-p2p/remora/sdk/host/hosttest"
)

// The environment of the "listen" child: the unix socket it serves on and,
// for TLS, its certificate and key and the client certificate it trusts
// (PEM).
const (
	envSock       = "REMORA_HOST_TEST_SOCK"
	envServerCert = "REMORA_HOST_TEST_SERVER_CERT"
	envServerKey  = "REMORA_HOST_TEST_SERVER_KEY"
	envClientCert = "REMORA_HOST_TEST_CLIENT_CERT"
)

// listen is the "listen" child: the mem adapter served with
// sdk.ServeListener on the socket envSock names, with mutual TLS if the
// certificates are set, until SIGTERM. No go-plugin.
func listen() int {
	l, err := net.Listen("unix", os.Getenv(envSock))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if c := os.Getenv(envServerCert); c != "" {
		cfg, err := serverTLS([]byte(c), []byte(os.Getenv(envServerKey)), []byte(os.Getenv(envClientCert)))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		l = tls.NewListener(l, cfg)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := sdk.ServeListener(ctx, l, hosttest.New(), sdk.WithLogger(slog.New(slog.DiscardHandler))); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// genCert makes a self-signed certificate as go-plugin's AutoMTLS does
// (ECDSA P-521, CN localhost), in PEM.
func genCert() (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "localhost"},
		DNSNames:              []string{"localhost"},
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		SerialNumber:          big.NewInt(1),
		NotBefore:             time.Now().Add(-30 * time.Second),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), nil
}

// serverTLS is the adapter side of AutoMTLS: its own certificate, the
// host's required (go-plugin's server config, plus the h2 ALPN gRPC's
// credentials would add).
func serverTLS(cert, key, peer []byte) (*tls.Config, error) {
	cfg, err := mutualTLS(cert, key, peer)
	if err != nil {
		return nil, err
	}
	cfg.NextProtos = []string{"h2"}
	return cfg, nil
}

// clientTLS is the host side of AutoMTLS (go-plugin's client config).
func clientTLS(cert, key, peer []byte) (*tls.Config, error) {
	cfg, err := mutualTLS(cert, key, peer)
	if err != nil {
		return nil, err
	}
	cfg.ServerName = "localhost"
	return cfg, nil
}

// mutualTLS is what both sides of AutoMTLS share: their own certificate,
// the peer's as the only authority, and a certificate required both ways.
func mutualTLS(cert, key, peer []byte) (*tls.Config, error) {
	kp, err := tls.X509KeyPair(cert, key)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(peer)
	return &tls.Config{Certificates: []tls.Certificate{kp}, ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs: pool, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// BenchmarkWire splits the cost of the adapter hop (issue #18: go-plugin
// against raw gRPC) into its parts, all in one run, with the mem adapter's
// no-op Publish and 1 KiB envelopes:
//
//   - inproc: raw gRPC on a unix socket in this process (host.ServeInProcess),
//     the baseline of plugins.BenchmarkPublish's rawgrpc;
//   - inproc+tls: the same with the mutual TLS AutoMTLS negotiates;
//   - proc: raw gRPC to another process (this test binary serving the
//     adapter with sdk.ServeListener), no TLS, no go-plugin;
//   - proc+tls: the same with mutual TLS;
//   - plugin: host.Launch, go-plugin with AutoMTLS and the supervisor's
//     default memory limit (GOMEMLIMIT 512 MiB), as remora runs adapters.
//
// Every arm goes through the same sdk server and sdk/host client code.
// Besides time, each arm reports per op the CPU time, read and write
// system calls and context switches of this process (host-…) and of the
// adapter process (adapter-…, not for the in-process arms): on a shared
// machine they vary less with the load than time does.
func BenchmarkWire(b *testing.B) {
	quiet := slog.New(slog.DiscardHandler)
	srvCert, srvKey, err := genCert()
	if err != nil {
		b.Fatal(err)
	}
	cliCert, cliKey, err := genCert()
	if err != nil {
		b.Fatal(err)
	}
	srvTLS, err := serverTLS(srvCert, srvKey, cliCert)
	if err != nil {
		b.Fatal(err)
	}
	cliTLS, err := clientTLS(cliCert, cliKey, srvCert)
	if err != nil {
		b.Fatal(err)
	}
	names := []string{"inproc", "inproc+tls", "proc", "proc+tls", "plugin"}
	pids := []int{0, 0}
	dir := b.TempDir()
	var clients []*host.Client
	defer func() {
		for _, c := range clients {
			_ = c.Close()
		}
	}()
	add := func(c *host.Client, err error) {
		b.Helper()
		if err != nil {
			b.Fatal(err)
		}
		clients = append(clients, c)
	}

	add(host.ServeInProcess(hosttest.New(), quiet))

	sock := filepath.Join(dir, "tls.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- sdk.ServeListener(ctx, tls.NewListener(l, srvTLS), hosttest.New(), sdk.WithLogger(quiet))
	}()
	defer func() { stop(); <-served }()
	add(host.DialTLS(context.Background(), sock, "mem", cliTLS))

	for i, tlsOn := range []bool{false, true} {
		sock := filepath.Join(dir, fmt.Sprintf("proc%d.sock", i))
		cmd := childCmd(b, "listen")
		cmd.Env = append(cmd.Env, envSock+"="+sock)
		if tlsOn {
			cmd.Env = append(cmd.Env, envServerCert+"="+string(srvCert), envServerKey+"="+string(srvKey), envClientCert+"="+string(cliCert))
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
		for range 500 { // until the child listens
			if c, err := net.Dial("unix", sock); err == nil {
				_ = c.Close()
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if tlsOn {
			add(host.DialTLS(context.Background(), sock, "mem", cliTLS))
		} else {
			add(host.Dial(context.Background(), sock, "mem"))
		}
		pids = append(pids, cmd.Process.Pid)
	}

	pcmd := childCmd(b, "serve")
	add(host.Launch(context.Background(), host.Config{Cmd: pcmd, Name: "mem", Logger: quiet, MemoryLimit: 1 << 30}))
	pids = append(pids, clients[len(clients)-1].Pid())

	chans := make([]sdk.Channel, len(clients))
	for i, c := range clients {
		ch, err := c.Configure(context.Background(), sdk.ConfigureRequest{ChannelID: "bench", Config: []byte(`{"noop":true}`)})
		if err != nil {
			b.Fatalf("%s: %v", names[i], err)
		}
		defer ch.Close()
		chans[i] = ch
	}
	for _, batch := range []int{64, 1} {
		for i, ch := range chans {
			b.Run(fmt.Sprintf("batch=%d/%s", batch, names[i]), func(b *testing.B) { benchPublish(b, ch, batch, pids[i]) })
		}
	}
}

// benchPublish reports the p50 of hosttest.PublishBatches (the loop
// plugins.BenchmarkPublish runs too): 1 KiB envelopes, batch per op; and
// the cost per op in this process and in the adapter process pid (0: none).
func benchPublish(b *testing.B, ch sdk.Channel, batch, pid int) {
	h0, a0 := readCost(b, 0), readCost(b, pid)
	lat := hosttest.PublishBatches(b, ch, batch, 1024)
	h1, a1 := readCost(b, 0), readCost(b, pid)
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	h1.report(b, h0, "host", len(lat))
	if pid != 0 {
		a1.report(b, a0, "adapter", len(lat))
	}
}

// cost is what a process has spent so far, from /proc.
type cost struct {
	cpu      time.Duration // user and system
	syscalls int64         // read and write system calls (syscr + syscw)
	switches int64         // context switches of all its threads
}

// readCost reads the cost of process pid (0: this one).
func readCost(b *testing.B, pid int) cost {
	b.Helper()
	dir := "/proc/self"
	if pid != 0 {
		dir = "/proc/" + strconv.Itoa(pid)
	}
	var c cost
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name, which may hold spaces: utime and
	// stime are the 12th and 13th, in clock ticks (100 a second on Linux).
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	for _, v := range f[11:13] {
		n, _ := strconv.ParseInt(v, 10, 64)
		c.cpu += time.Duration(n) * 10 * time.Millisecond
	}
	c.syscalls = sumFields(b, dir+"/io", ":", "syscr", "syscw")
	tasks, err := filepath.Glob(dir + "/task/*/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, t := range tasks {
		c.switches += sumFields(b, t, ":", "voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")
	}
	return c
}

// sumFields sums the numeric values of keys in a "key: value" file.
func sumFields(b *testing.B, path, sep string, keys ...string) int64 {
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	var sum int64
	for line := range strings.Lines(string(data)) {
		k, v, _ := strings.Cut(line, sep)
		if slices.Contains(keys, k) {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			sum += n
		}
	}
	return sum
}

// report reports c minus before, per op, with the given prefix.
func (c cost) report(b *testing.B, before cost, prefix string, ops int) {
	n := float64(ops)
	b.ReportMetric(float64((c.cpu-before.cpu).Microseconds())/n, prefix+"-cpu-µs")
	b.ReportMetric(float64(c.syscalls-before.syscalls)/n, prefix+"-syscalls")
	b.ReportMetric(float64(c.switches-before.switches)/n, prefix+"-switches")
}
