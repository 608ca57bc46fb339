package host_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/host"
	"github.com/remora-p2p/remora/sdk/host/hosttest"
	"github.com/remora-p2p/remora/sdk/internal/wire"
)

// hashServer is an adapter written against the generated service alone
// (gRPC's default codec): Publish answers each item with the SHA-256 of the
// data it received.
type hashServer struct {
	wire.UnimplementedAdapterServer
}

func (hashServer) Info(context.Context, *wire.InfoRequest) (*wire.InfoResponse, error) {
	return &wire.InfoResponse{Name: "hash", Version: "1", Defaults: &wire.Capabilities{Counting: "bytes", Delete: "none", IdempotencyLevel: "none"}}, nil
}

func (hashServer) Configure(context.Context, *wire.ConfigureRequest) (*wire.ConfigureResponse, error) {
	return &wire.ConfigureResponse{Handle: 1, Capabilities: &wire.Capabilities{Counting: "bytes", Delete: "none", IdempotencyLevel: "none"}, Features: &wire.Features{}}, nil
}

func (hashServer) Publish(_ context.Context, req *wire.PublishRequest) (*wire.PublishResponse, error) {
	out := &wire.PublishResponse{}
	for _, it := range req.GetItems() {
		sum := sha256.Sum256(it.GetData())
		out.Results = append(out.Results, &wire.PublishResult{Result: &wire.PublishResult_Id{Id: hex.EncodeToString(sum[:])}})
	}
	return out, nil
}

func batch(t *testing.T) []sdk.PublishItem {
	items := make([]sdk.PublishItem, 64)
	for i := range items {
		items[i].Data = make([]byte, 1024)
		rand.Read(items[i].Data)
		items[i].IdempotencyKey = fmt.Sprintf("key-%d", i)
	}
	return items
}

// The host's codec (wire.Codec) speaks to a server on gRPC's default one:
// a 64-envelope batch (on the codec's pooled path) arrives intact.
func TestCodecHostToPlainServer(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "a.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	wire.RegisterAdapterServer(gs, hashServer{})
	go gs.Serve(l)
	defer gs.Stop()

	c, err := host.Dial(context.Background(), sock, "hash")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch, err := c.Configure(context.Background(), sdk.ConfigureRequest{ChannelID: "x"})
	if err != nil {
		t.Fatal(err)
	}
	items := batch(t)
	resp, err := ch.Publish(context.Background(), sdk.PublishRequest{Items: items})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range resp.Results {
		sum := sha256.Sum256(items[i].Data)
		if r.Err != nil || r.ID != hex.EncodeToString(sum[:]) {
			t.Fatalf("item %d: the server received other data (id %q, error %v)", i, r.ID, r.Err)
		}
	}
}

// A client on gRPC's default codec speaks to sdk's server (wire.Codec):
// a 64-envelope batch goes in and comes back out of Subscribe intact.
func TestCodecPlainClientToServer(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "a.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- sdk.ServeListener(ctx, l, hosttest.New(), sdk.WithLogger(slog.New(slog.DiscardHandler)))
	}()
	defer func() { cancel(); <-served }()

	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rpc := wire.NewAdapterClient(conn)
	cr, err := rpc.Configure(ctx, &wire.ConfigureRequest{ChannelId: "x", StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	items := batch(t)
	req := &wire.PublishRequest{Handle: cr.GetHandle()}
	for _, it := range items {
		req.Items = append(req.Items, &wire.PublishItem{Data: it.Data, IdempotencyKey: it.IdempotencyKey})
	}
	if _, err := rpc.Publish(ctx, req); err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	stream, err := rpc.Subscribe(sctx, &wire.SubscribeRequest{Handle: cr.GetHandle()})
	if err != nil {
		t.Fatal(err)
	}
	for i := range items {
		d, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(d.GetData(), items[i].Data) {
			t.Fatalf("delivery %d differs from what was published", i)
		}
	}
}
