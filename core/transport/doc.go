// Package transport is remora's live path between members: a go-libp2p host
// (QUIC-v1 and TCP, Noise/TLS 1.3, yamux, identify, AutoNAT, circuit relay v2,
// DCUtR hole punching) behind a small interface that speaks
// peer IDs, addresses, paths and acknowledged messages.
//
// The rest of remora never imports libp2p packages other than peer.ID and
// multiaddr: it hands addresses in with [Transport.AddAddrs], asks for a live
// path with [Transport.Connect], and sends with [Transport.Send].
//
// # Protocol /remora/msg/1
//
// One libp2p stream carries a sequence of request/acknowledgement exchanges;
// a sender may reuse an idle stream for the next message. Each exchange is:
//
//	request  = uvarint(len(msg)) msg            ; len(msg) <= the receiver's limit
//	response = 0x00                             ; ACK: the handler accepted msg
//	         | 0x01 uvarint(len(reason)) reason ; NACK: the handler returned an error
//	         | 0x02                             ; TOO LARGE: the receiver resets the stream
//
// reason is UTF-8, at most 1024 bytes. A sender treats any other response
// byte, a reset or EOF before the response as a transport failure: the
// message may or may not have been handled (at-least-once; the layer above
// dedupes). The receiver closes a stream that stays idle for
// [IdleStreamTimeout].
//
// # Connections
//
// A connection gater admits only peers for which Options.Allow returns true
// (circle members) plus the configured static relays, in both directions and
// for relayed connections. Relayed connections are libp2p "limited"
// connections; messages may use them (network.WithAllowLimitedConn). See
// docs/transport.md for the connect strategy, relay limits and the NAT lab.
package transport
