package birthday

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"time"
)

// Bounds of one attempt (see the package comment).
const (
	Ports      = 256
	OpenRepeat = 2
	Probes     = 2048
	ProbeEvery = time.Millisecond
	packetLen  = 22
	minPort    = 1024 // Linux NAT keeps source ports ≥ 1024 in that range
)

var magic = [4]byte{0x00, 'r', 'b', 'p'}

// Token ties the packets of one attempt together.
type Token [16]byte

// NewToken returns a random token.
func NewToken() (Token, error) {
	var t Token
	if _, err := rand.Read(t[:]); err != nil {
		return t, fmt.Errorf("birthday: token: %w", err)
	}
	return t, nil
}

// ErrNoHit is returned when no probe reached the hard side in time.
var ErrNoHit = errors.New("birthday: no probe got through")

func packet(tok Token, port uint16) []byte {
	b := make([]byte, 0, packetLen)
	b = append(b, magic[:]...)
	b = append(b, tok[:]...)
	return binary.BigEndian.AppendUint16(b, port)
}

// parse returns the port of a packet carrying tok.
func parse(b []byte, tok Token) (uint16, bool) {
	if len(b) != packetLen || [4]byte(b[:4]) != magic || Token(b[4:20]) != tok {
		return 0, false
	}
	return binary.BigEndian.Uint16(b[20:]), true
}

// Hard is the symmetric side of one attempt: its open sockets.
type Hard struct {
	conns []*net.UDPConn
	hit   chan Hit
}

// Hit is the socket a probe reached.
type Hit struct {
	LocalPort  int    // the winning socket's local port (closed by Wait)
	PublicPort uint16 // its mapping's public port on the hard side's NAT
	From       netip.AddrPort
}

// Open opens n sockets (Ports if n is 0) and sends OpenRepeat packets from
// each to easy, the easy side's public address.
func Open(ctx context.Context, easy netip.AddrPort, tok Token, n int) (*Hard, error) {
	if n <= 0 {
		n = Ports
	}
	h := &Hard{hit: make(chan Hit, 1)}
	dst := net.UDPAddrFromAddrPort(easy)
	pkt := packet(tok, 0)
	for range n {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
		if err != nil {
			h.close()
			return nil, fmt.Errorf("birthday: open: %w", err)
		}
		h.conns = append(h.conns, c)
		go h.read(c, tok)
	}
	for range OpenRepeat {
		for _, c := range h.conns {
			if err := ctx.Err(); err != nil {
				h.close()
				return nil, fmt.Errorf("birthday: open: %w", err)
			}
			c.WriteToUDP(pkt, dst) // a lost packet costs one mapping, not the attempt
		}
	}
	return h, nil
}

func (h *Hard) read(c *net.UDPConn, tok Token) {
	buf := make([]byte, 64)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return // closed
		}
		if port, ok := parse(buf[:n], tok); ok && port != 0 {
			select {
			case h.hit <- Hit{LocalPort: c.LocalAddr().(*net.UDPAddr).Port, PublicPort: port, From: from}:
			default:
			}
			return
		}
	}
}

// Wait waits for the first probe to reach one of the sockets and closes
// them all; the NAT's mapping outlives the socket, so the caller can bind
// the winning local port again (its QUIC listener) and be reached on it.
func (h *Hard) Wait(ctx context.Context) (Hit, error) {
	defer h.close()
	select {
	case hit := <-h.hit:
		return hit, nil
	case <-ctx.Done():
		return Hit{}, fmt.Errorf("birthday: wait: %w (%w)", ErrNoHit, ctx.Err())
	}
}

// Close gives up the attempt.
func (h *Hard) Close() { h.close() }

func (h *Hard) close() {
	for _, c := range h.conns {
		c.Close()
	}
}

// Spray sends at most probes probes (Probes if 0) from conn to random
// distinct ports of ip, one every ProbeEvery, until ctx ends; it returns
// how many it sent.
func Spray(ctx context.Context, conn net.PacketConn, ip netip.Addr, tok Token, probes int) (int, error) {
	if probes <= 0 {
		probes = Probes
	}
	seen := make(map[uint16]bool, probes)
	tick := time.NewTicker(ProbeEvery)
	defer tick.Stop()
	sent := 0
	for sent < probes {
		r, err := rand.Int(rand.Reader, big.NewInt(65536-minPort))
		if err != nil {
			return sent, fmt.Errorf("birthday: spray: %w", err)
		}
		port := uint16(r.Int64() + minPort)
		if seen[port] {
			continue
		}
		seen[port] = true
		dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, port))
		if _, err := conn.WriteTo(packet(tok, port), dst); err != nil {
			return sent, fmt.Errorf("birthday: spray: %w", err)
		}
		sent++
		select {
		case <-ctx.Done():
			return sent, nil
		case <-tick.C:
		}
	}
	return sent, nil
}
