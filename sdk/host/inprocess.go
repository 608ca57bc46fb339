package host

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/remora-p2p/remora/sdk"
)

// ServeInProcess serves a over plain gRPC on a unix socket inside this
// process (sdk.ServeListener) and returns a Client dialed to it: the same
// wire path as a subprocess without go-plugin, the handshake, TLS or a
// process boundary. It is for tests and benchmarks. Channels log to logger
// (default slog.Default()) with adapter=NAME. Close stops the server and
// closes its channels.
func ServeInProcess(a sdk.Adapter, logger *slog.Logger) (*Client, error) {
	if logger == nil {
		logger = slog.Default()
	}
	name := a.Info().Name
	dir, err := os.MkdirTemp("", "remora-adapter-")
	if err != nil {
		return nil, fmt.Errorf("host: serve in process: %w", err)
	}
	sock := filepath.Join(dir, "adapter.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("host: serve in process: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- sdk.ServeListener(ctx, l, a, sdk.WithLogger(logger.With("adapter", name)))
	}()
	shutdown := func() error {
		stop()
		err := <-served
		_ = os.RemoveAll(dir)
		return err
	}
	c, err := dial(context.Background(), sock, name, shutdown)
	if err != nil {
		_ = shutdown()
		return nil, fmt.Errorf("host: serve in process: %w", err)
	}
	return c, nil
}

// Dial connects to an adapter served with sdk.ServeListener on the unix
// socket at path (plain gRPC, no handshake). Close closes the connection
// only; the server keeps running.
func Dial(ctx context.Context, path, name string) (*Client, error) {
	c, err := dial(ctx, path, name, nil)
	if err != nil {
		return nil, fmt.Errorf("host: dial adapter %s: %w", name, err)
	}
	return c, nil
}

func dial(ctx context.Context, path, name string, after func() error) (*Client, error) {
	conn, err := grpc.NewClient("unix://"+path,
		append(dialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	closeFn := func() error {
		defer close(done)
		err := conn.Close()
		if after != nil {
			if aerr := after(); aerr != nil {
				err = aerr
			}
		}
		return err
	}
	c, err := newClient(ctx, name, conn, done, 0, closeFn)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return c, nil
}
