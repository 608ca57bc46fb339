package transport_test

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/remora-p2p/remora/core/transport"
)

// A member cannot aim our birthday probes at someone else: a request whose
// IP is not one its sender is known at is refused (the stream is reset at
// once) before a single probe is sent. The lab's pr-sym cell
// (core/node TestNATMatrix) proves the accepted case end to end.
func TestBirthdayRefusesForeignIP(t *testing.T) {
	a, b, _ := pair(t, nil)
	ctx := ctxT(t, 20*time.Second)
	if _, err := b.Connect(ctx, a.ID()); err != nil {
		t.Fatal(err)
	}
	s, err := b.Host().NewStream(network.WithAllowLimitedConn(ctx, "test"), a.ID(), transport.BirthdayProtocol)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	req := make([]byte, 16, 20)
	req = append(req, 192, 0, 2, 99) // b is known at 127.0.0.1 only
	if _, err := s.Write(req); err != nil {
		t.Fatal(err)
	}
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = s.Read(make([]byte, 2))
	var ne net.Error
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("read = %v; want the stream reset at once (an accepted request waits for the winning port)", err)
	}
}
