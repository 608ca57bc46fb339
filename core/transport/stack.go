package transport

import (
	"github.com/libp2p/go-libp2p"
	ic "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/sec"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	tptu "github.com/libp2p/go-libp2p/p2p/net/upgrader"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	tls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
)

// stackConfig varies the libp2p stack; the zero value is what remora ships.
// Only the benchmarks set it (see BENCHMARKS.md).
type stackConfig struct {
	noiseFirst    bool   // prefer Noise over TLS 1.3 on TCP
	noCoalesce    bool   // libp2p's security transports as they come (one write(2) per record)
	yamuxWindow   uint32 // max yamux stream window; 0 = libp2p's 16 MiB
	yamuxReadBuf  int    // yamux read buffer; 0 = none (the security layer buffers)
	yamuxMaxFrame uint32 // max yamux frame; 0 = yamux's 64 KiB
}

// stackOptions is the transport/security/muxer stack (see docs/transport.md
// for why these and in this order).
func stackOptions(c stackConfig) []libp2p.Option {
	secOpts := []libp2p.Option{
		libp2p.Security(tls.ID, securityConstructor(c, tls.New)),
		libp2p.Security(noise.ID, securityConstructor(c, noise.New)),
	}
	if c.noiseFirst {
		secOpts[0], secOpts[1] = secOpts[1], secOpts[0]
	}
	mux := yamux.DefaultTransport
	if c.yamuxWindow != 0 || c.yamuxReadBuf != 0 || c.yamuxMaxFrame != 0 {
		cfg := *mux
		if c.yamuxWindow != 0 {
			cfg.MaxStreamWindowSize = c.yamuxWindow
		}
		if c.yamuxMaxFrame != 0 {
			cfg.MaxMessageSize = c.yamuxMaxFrame
		}
		cfg.ReadBufSize = c.yamuxReadBuf
		mux = &cfg
	}
	return append([]libp2p.Option{
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.Muxer(yamux.ID, mux),
	}, secOpts...)
}

// securityConstructor wraps a libp2p security constructor (tls.New,
// noise.New) so that its connections coalesce writes (see coalesce.go).
// libp2p fills the parameters by type, so the signature must stay this one.
func securityConstructor[T sec.SecureTransport](c stackConfig, newSec func(protocol.ID, ic.PrivKey, []tptu.StreamMuxer) (T, error)) func(protocol.ID, ic.PrivKey, []tptu.StreamMuxer) (sec.SecureTransport, error) {
	return func(id protocol.ID, key ic.PrivKey, muxers []tptu.StreamMuxer) (sec.SecureTransport, error) {
		t, err := newSec(id, key, muxers)
		if err != nil {
			return nil, err
		}
		if c.noCoalesce {
			return t, nil
		}
		return coalescingSecurity{SecureTransport: t}, nil
	}
}
