package host

import (
	"context"
	"crypto/tls"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/remora-p2p/remora/sdk"
)

// DialTLS is Dial over TLS with cfg, for the benchmark arm that is raw gRPC
// with the transport security go-plugin's AutoMTLS gives the real path.
func DialTLS(ctx context.Context, path, name string, cfg *tls.Config) (*Client, error) {
	return dialTLS(ctx, path, name, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
}

// DialTLSTuned is DialTLS with what Launch adds to a connection to an
// adapter process: the larger write buffer and coalesced TLS writes.
func DialTLSTuned(ctx context.Context, path, name string, cfg *tls.Config) (*Client, error) {
	return dialTLS(ctx, path, name, grpc.WithWriteBufferSize(writeBufferSize),
		grpc.WithTransportCredentials(coalescedTLS{credentials.NewTLS(cfg)}))
}

// ServeInProcessTuned is ServeInProcess with Launch's write buffer (the
// coalesced TLS writes have no TLS to act on here): raw gRPC with the same
// tuning, the second baseline of issue #18.
func ServeInProcessTuned(a sdk.Adapter, logger *slog.Logger) (*Client, error) {
	return serveInProcess(a, logger, grpc.WithWriteBufferSize(writeBufferSize))
}

func dialTLS(ctx context.Context, path, name string, opts ...grpc.DialOption) (*Client, error) {
	conn, err := grpc.NewClient("unix://"+path, append(dialOptions(), opts...)...)
	if err != nil {
		return nil, err
	}
	c, err := newClient(ctx, name, conn, make(chan struct{}), 0, conn.Close)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return c, nil
}
