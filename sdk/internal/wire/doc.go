// Package wire is the adapter wire protocol: the gRPC service
// remora.adapter.v1.Adapter (adapter.proto, generated code committed) and the
// go-plugin handshake constants both halves share. It is internal to sdk so
// protobuf never leaks out of it: adapters see sdk types (sdk.Serve holds the
// server half), hosts see sdk/host (the client half).
//
// docs/adapter-protocol.md specifies the protocol for other languages.
// Regenerate with `make proto` (gen.sh); the result must not differ.
package wire

// The go-plugin handshake. The cookie is not a secret: it only tells a binary
// it was started by a remora host, so one run by hand can say what it is.
const (
	// MagicCookieKey is the environment variable the host sets.
	MagicCookieKey = "REMORA_ADAPTER_PLUGIN"
	// MagicCookieValue is its value.
	MagicCookieValue = "b9f3a1c6e2d84f57a0c1-remora-adapter"
	// PluginName is the name of the one plugin in the go-plugin plugin set.
	PluginName = "adapter"
	// MaxMessageSize bounds one gRPC message in either direction (a Publish
	// batch, a BoardGet response).
	MaxMessageSize = 64 << 20
	// WindowSize is the HTTP/2 flow-control window both sides use, per
	// stream and per connection. gRPC's 64 KiB default makes a batch of 64
	// 1 KiB envelopes wait a round trip for a window update mid-message.
	WindowSize = 1 << 20
	// EnvLogLevel carries the host's log level (slog level text, e.g.
	// "DEBUG") so the adapter does not ship lines the host would drop.
	EnvLogLevel = "REMORA_ADAPTER_LOG_LEVEL"
	// EnvLifeline names the inherited file descriptor the host holds the
	// write end of; EOF on it means the host is gone and the adapter exits.
	EnvLifeline = "REMORA_ADAPTER_LIFELINE_FD"
)
