package host

import (
	"context"
	"crypto/tls"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// DialTLS is Dial over TLS with cfg, for the benchmark arm that is raw gRPC
// with the transport security go-plugin's AutoMTLS gives the real path.
func DialTLS(ctx context.Context, path, name string, cfg *tls.Config) (*Client, error) {
	conn, err := grpc.NewClient("unix://"+path,
		append(dialOptions(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))...)
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
