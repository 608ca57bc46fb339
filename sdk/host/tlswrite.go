package host

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// writeBufferSize is gRPC's write buffer on the host's connection to an
// adapter process (gRPC's default is 32 KiB): a Publish batch of 64
// envelopes of 1 KiB (about 68 KiB) reaches TLS in one write instead of
// three. gRPC shares the buffer between flushes, so an idle connection
// holds none.
const writeBufferSize = 128 << 10

// pluginDialOptions are the dial options of the host's connection to an
// adapter process on top of dialOptions: the larger write buffer, and
// go-plugin's AutoMTLS credentials whose TLS records of one write leave in
// one system call (coalescedTLS). Plain gRPC connections (Dial,
// ServeInProcess) keep gRPC's defaults.
func pluginDialOptions(cfg *plugin.ClientConfig) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithWriteBufferSize(writeBufferSize),
		grpc.WithTransportCredentials(autoMTLS{cfg: cfg}),
	}
}

// autoMTLS is go-plugin's AutoMTLS transport credentials, with writes
// coalesced. go-plugin makes the TLS configuration (its client certificate,
// the adapter's certificate as the only authority) when it starts the
// process and stores it in the ClientConfig, after the dial options are
// given but before it dials; these credentials, given after go-plugin's own
// and so replacing them, read it there when gRPC asks. Without one they
// fail: never a connection without TLS.
type autoMTLS struct {
	cfg *plugin.ClientConfig
}

func (a autoMTLS) tls() (credentials.TransportCredentials, error) {
	if a.cfg.TLSConfig == nil {
		return nil, errors.New("host: go-plugin gave no AutoMTLS configuration")
	}
	return credentials.NewTLS(a.cfg.TLSConfig), nil
}

func (a autoMTLS) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	creds, err := a.tls()
	if err != nil {
		return nil, nil, err
	}
	return coalescedTLS{creds}.ClientHandshake(ctx, authority, raw)
}

func (a autoMTLS) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("host: AutoMTLS credentials are for the host side only")
}

// Info is go-plugin's: its ServerName ("localhost") is the authority gRPC
// verifies the adapter's certificate against.
func (a autoMTLS) Info() credentials.ProtocolInfo {
	creds, err := a.tls()
	if err != nil {
		return credentials.ProtocolInfo{SecurityProtocol: "tls"}
	}
	return creds.Info()
}

func (a autoMTLS) Clone() credentials.TransportCredentials { return a }

func (a autoMTLS) OverrideServerName(string) error {
	return errors.New("host: AutoMTLS credentials keep go-plugin's server name")
}

// coalescedTLS is TLS credentials whose connections send what one Write
// encrypts in one system call. crypto/tls writes every record of at most
// 16 KiB with its own call, so a 68 KiB batch crossed as five writes and
// the adapter could wake for each; now it crosses as one. The records, the
// keys and the handshake are TLS's own.
type coalescedTLS struct {
	credentials.TransportCredentials
}

func (c coalescedTLS) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	under := &batchConn{Conn: raw}
	conn, info, err := c.TransportCredentials.ClientHandshake(ctx, authority, under)
	if err != nil {
		return nil, nil, fmt.Errorf("host: tls handshake: %w", err)
	}
	return &flushConn{Conn: conn, under: under}, info, nil
}

func (c coalescedTLS) Clone() credentials.TransportCredentials {
	return coalescedTLS{c.TransportCredentials.Clone()}
}

// flushConn is the TLS connection: each Write's records are collected
// below it and sent together when the Write returns.
type flushConn struct {
	net.Conn
	mu    sync.Mutex // one Write at a time owns the batch
	under *batchConn
}

func (f *flushConn) Write(b []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.under.start()
	n, err := f.Conn.Write(b)
	if ferr := f.under.flush(); err == nil && ferr != nil {
		// The records that did not leave are lost; TLS cannot resend them.
		return 0, ferr
	}
	return n, err
}

// batchConn is the connection under TLS. Between start and flush it keeps
// what TLS writes; otherwise (the handshake, alerts) it writes through.
type batchConn struct {
	net.Conn
	mu       sync.Mutex
	batching bool
	buf      *[]byte
}

// batchBufs holds the batches' buffers between writes, so that an idle
// connection keeps none.
var batchBufs = sync.Pool{New: func() any { return new([]byte) }}

func (c *batchConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.batching {
		return c.Conn.Write(b)
	}
	if c.buf == nil {
		c.buf = batchBufs.Get().(*[]byte)
	}
	*c.buf = append(*c.buf, b...)
	return len(b), nil
}

func (c *batchConn) start() {
	c.mu.Lock()
	c.batching = true
	c.mu.Unlock()
}

// flush sends the batch in one write and ends it.
func (c *batchConn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batching = false
	if c.buf == nil {
		return nil
	}
	buf := c.buf
	c.buf = nil
	_, err := c.Conn.Write(*buf)
	*buf = (*buf)[:0]
	batchBufs.Put(buf)
	return err
}
