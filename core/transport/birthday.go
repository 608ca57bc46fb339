package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/remora-p2p/remora/core/birthday"
)

// BirthdayProtocol coordinates one birthday-paradox attempt (core/birthday)
// over a live, usually relayed, connection. The hard (symmetric) side opens
// the stream and writes token (16) ‖ its public IPv4 (4); the easy side
// sprays probes from its QUIC socket; the hard side, once a probe got
// through, listens for QUIC on the winning local port and writes the
// winning public port (2); the easy side dials it from its QUIC socket.
const BirthdayProtocol = "/remora/birthday/1"

// birthdayTimeout bounds one attempt end to end.
const birthdayTimeout = 8 * time.Second

// ErrNoBirthday means an attempt cannot start: no public QUIC address of
// the peer or of ours is known.
var ErrNoBirthday = errors.New("transport: birthday: no public addresses to probe between")

// Birthday runs one attempt as the hard side towards p, whose NAT maps
// endpoint-independently, and returns once a direct path exists or the
// attempt failed.
func (t *Transport) Birthday(ctx context.Context, p peer.ID) error {
	ctx, cancel := context.WithTimeout(ctx, birthdayTimeout)
	defer cancel()
	easy, ok := publicQUIC(t.h.Peerstore().Addrs(p))
	if !ok {
		return ErrNoBirthday
	}
	var obs []ma.Multiaddr
	for _, a := range t.observedAddrs() {
		obs = append(obs, a.Multiaddr)
	}
	own, ok := publicQUIC(obs)
	if !ok {
		return ErrNoBirthday
	}
	tok, err := birthday.NewToken()
	if err != nil {
		return err
	}
	s, err := t.h.NewStream(network.WithAllowLimitedConn(ctx, "remora birthday"), p, BirthdayProtocol)
	if err != nil {
		return fmt.Errorf("transport: birthday: %w", err)
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(birthdayTimeout))
	hard, err := birthday.Open(ctx, easy, tok, 0)
	if err != nil {
		s.Reset()
		return err
	}
	ip := own.Addr().As4()
	if _, err := s.Write(append(tok[:], ip[:]...)); err != nil {
		hard.Close()
		return fmt.Errorf("transport: birthday: %w", err)
	}
	hit, err := hard.Wait(ctx)
	if err != nil {
		s.Reset()
		return err
	}
	// the NAT's mapping outlives the probe socket: the QUIC listener on the
	// same local port is reached through it
	laddr, err := ma.NewMultiaddr(fmt.Sprintf("/ip4/0.0.0.0/udp/%d/quic-v1", hit.LocalPort))
	if err != nil {
		return fmt.Errorf("transport: birthday: %w", err)
	}
	if err := t.h.Network().Listen(laddr); err != nil {
		s.Reset()
		return fmt.Errorf("transport: birthday: listen on the winning port: %w", err)
	}
	t.log.Info("birthday probe got through", "peer", p, "local port", hit.LocalPort, "public port", hit.PublicPort)
	if _, err := s.Write(binary.BigEndian.AppendUint16(nil, hit.PublicPort)); err != nil {
		return fmt.Errorf("transport: birthday: %w", err)
	}
	io.Copy(io.Discard, s) // the easy side closes once it dialed
	if !t.PathTo(p).IsDirect() {
		return fmt.Errorf("transport: birthday: %w", birthday.ErrNoHit)
	}
	return nil
}

// handleBirthday is the easy side of an attempt.
func (t *Transport) handleBirthday(s network.Stream) {
	defer s.Close()
	p := s.Conn().RemotePeer()
	ctx, cancel := context.WithTimeout(t.ctx, birthdayTimeout)
	defer cancel()
	s.SetDeadline(time.Now().Add(birthdayTimeout))
	var req [20]byte
	if _, err := io.ReadFull(s, req[:]); err != nil {
		s.Reset()
		return
	}
	tok, ip := birthday.Token(req[:16]), netip.AddrFrom4([4]byte(req[16:]))
	// probes go only to an address the peer is known at, one attempt per
	// peer at a time: a member cannot aim our probes at someone else
	if !t.knownIP(p, ip) {
		t.log.Info("birthday: refused, not an address of the peer", "peer", p, "ip", ip)
		s.Reset()
		return
	}
	t.mu.Lock()
	busy := t.spraying[p]
	if t.spraying == nil {
		t.spraying = map[peer.ID]bool{}
	}
	t.spraying[p] = true
	t.mu.Unlock()
	if busy {
		s.Reset()
		return
	}
	defer func() {
		t.mu.Lock()
		delete(t.spraying, p)
		t.mu.Unlock()
	}()
	conn, err := t.quicPacketConn()
	if err != nil {
		t.log.Debug("birthday: no QUIC socket to probe from", "peer", p, "err", err)
		s.Reset()
		return
	}
	sprayCtx, stopSpray := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		n, err := birthday.Spray(sprayCtx, conn, ip, tok, 0)
		t.log.Debug("birthday: probes sent", "peer", p, "probes", n, "err", err)
	}()
	var port [2]byte
	_, err = io.ReadFull(s, port[:])
	stopSpray()
	<-done
	conn.Close()
	if err != nil {
		t.log.Debug("birthday: no probe got through", "peer", p, "err", err)
		return
	}
	raddr, err := ma.NewMultiaddr(fmt.Sprintf("/ip4/%s/udp/%d/quic-v1", ip, binary.BigEndian.Uint16(port[:])))
	if err != nil {
		return
	}
	dctx := network.WithForceDirectDial(ctx, "remora birthday")
	if err := t.h.Connect(dctx, peer.AddrInfo{ID: p, Addrs: []ma.Multiaddr{raddr}}); err != nil {
		t.log.Info("birthday: dial after the probe failed", "peer", p, "addr", raddr, "err", err)
		return
	}
	t.log.Info("birthday: direct path", "peer", p, "addr", raddr)
}

// knownIP reports whether ip is the IP of one of p's known direct
// addresses (its presence record's, identify's).
func (t *Transport) knownIP(p peer.ID, ip netip.Addr) bool {
	for _, a := range t.h.Peerstore().Addrs(p) {
		if isRelayAddr(a) {
			continue
		}
		if v, err := manet.ToIP(a); err == nil {
			if got, ok := netip.AddrFromSlice(v); ok && got.Unmap() == ip {
				return true
			}
		}
	}
	return false
}

// quicPacketConn shares our IPv4 QUIC listener's socket for sending
// non-QUIC packets: probes must leave from the port our NAT maps for QUIC.
func (t *Transport) quicPacketConn() (net.PacketConn, error) {
	if t.quicCM == nil {
		return nil, errors.New("no QUIC connection manager")
	}
	for _, a := range t.h.Network().ListenAddresses() {
		if _, err := a.ValueForProtocol(ma.P_QUIC_V1); err != nil {
			continue
		}
		if _, err := a.ValueForProtocol(ma.P_IP4); err != nil {
			continue
		}
		na, err := manet.ToNetAddr(a.Decapsulate(ma.StringCast("/quic-v1")))
		if err != nil {
			continue
		}
		if u, ok := na.(*net.UDPAddr); ok {
			return t.quicCM.SharedNonQUICPacketConn("udp4", u)
		}
	}
	return nil, errors.New("no IPv4 QUIC listener")
}

// publicQUIC picks a public IPv4 QUIC address from addrs.
func publicQUIC(addrs []ma.Multiaddr) (netip.AddrPort, bool) {
	for _, a := range addrs {
		if isRelayAddr(a) || !manet.IsPublicAddr(a) {
			continue
		}
		if _, err := a.ValueForProtocol(ma.P_QUIC_V1); err != nil {
			continue
		}
		na, err := manet.ToNetAddr(a.Decapsulate(ma.StringCast("/quic-v1")))
		if err != nil {
			continue
		}
		if u, ok := na.(*net.UDPAddr); ok && u.IP.To4() != nil {
			return u.AddrPort(), true
		}
	}
	return netip.AddrPort{}, false
}
