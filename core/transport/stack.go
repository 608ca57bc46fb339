package transport

import (
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	tls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
)

// stackConfig varies the libp2p stack; the zero value is what remora ships.
// Only the benchmarks set it (see BENCHMARKS.md).
type stackConfig struct {
	noiseFirst   bool   // prefer Noise over TLS 1.3 on TCP
	yamuxWindow  uint32 // max yamux stream window; 0 = libp2p's 16 MiB
	yamuxReadBuf int    // yamux read buffer; 0 = none (the security layer buffers)
}

// stackOptions is the transport/security/muxer stack (see docs/transport.md
// for why these and in this order).
func stackOptions(c stackConfig) []libp2p.Option {
	sec := []libp2p.Option{libp2p.Security(tls.ID, tls.New), libp2p.Security(noise.ID, noise.New)}
	if c.noiseFirst {
		sec[0], sec[1] = sec[1], sec[0]
	}
	mux := yamux.DefaultTransport
	if c.yamuxWindow != 0 || c.yamuxReadBuf != 0 {
		cfg := *mux
		if c.yamuxWindow != 0 {
			cfg.MaxStreamWindowSize = c.yamuxWindow
		}
		cfg.ReadBufSize = c.yamuxReadBuf
		mux = &cfg
	}
	return append([]libp2p.Option{
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.Muxer(yamux.ID, mux),
	}, sec...)
}
