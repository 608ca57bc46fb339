package host

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/credentials"
)

// countingConn counts the writes that reach the socket.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// tlsPair returns a server and a client TLS configuration that trust each
// other's certificate (as AutoMTLS's do, ServerName localhost).
func tlsPair(t *testing.T) (srv, cli *tls.Config) {
	t.Helper()
	cert := func() (tls.Certificate, *x509.Certificate) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
			ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
			KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
			BasicConstraintsValid: true, IsCA: true, SerialNumber: big.NewInt(1),
			NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, c
	}
	sc, sx := cert()
	cc, cx := cert()
	sp, cp := x509.NewCertPool(), x509.NewCertPool()
	sp.AddCert(cx)
	cp.AddCert(sx)
	srv = &tls.Config{Certificates: []tls.Certificate{sc}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: sp, MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2"}} // gRPC's credentials require ALPN
	cli = &tls.Config{Certificates: []tls.Certificate{cc}, RootCAs: cp, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	return srv, cli
}

// TestCoalescedTLS: a 68 KiB write (five TLS records) leaves in one write
// on the socket, and the peer, on plain crypto/tls, reads the same bytes.
func TestCoalescedTLS(t *testing.T) {
	srvCfg, cliCfg := tlsPair(t)
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	server := tls.Server(b, srvCfg)
	msg := make([]byte, 68<<10)
	rand.Read(msg)
	got := make(chan []byte, 1)
	go func() {
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(server, buf); err != nil {
			t.Error(err)
		}
		got <- buf
	}()

	raw := &countingConn{Conn: a}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, info, err := coalescedTLS{credentials.NewTLS(cliCfg)}.ClientHandshake(ctx, "localhost", raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := info.(credentials.TLSInfo); !ok {
		t.Fatalf("auth info %T, want credentials.TLSInfo", info)
	}
	before := raw.writes.Load()
	if n, err := conn.Write(msg); err != nil || n != len(msg) {
		t.Fatalf("write: %d, %v", n, err)
	}
	if w := raw.writes.Load() - before; w != 1 {
		t.Errorf("a 68 KiB write took %d writes on the socket, want 1", w)
	}
	if !bytes.Equal(<-got, msg) {
		t.Fatal("the peer read other bytes than were written")
	}
}

// TestAutoMTLSWithoutConfig: without go-plugin's TLS configuration the
// handshake fails; there is no fallback to a connection without TLS.
func TestAutoMTLSWithoutConfig(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	creds := autoMTLS{cfg: &plugin.ClientConfig{}}
	if _, _, err := creds.ClientHandshake(context.Background(), "localhost", a); err == nil {
		t.Fatal("handshake without a TLS configuration succeeded")
	}
	if p := creds.Info().SecurityProtocol; p != "tls" {
		t.Fatalf("security protocol %q, want tls", p)
	}
}
