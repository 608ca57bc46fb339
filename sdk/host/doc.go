// Package host is the host side of the adapter wire protocol: it starts an
// adapter process with go-plugin (handshake, AutoMTLS, SHA-256 pinning),
// re-emits its stderr log lines into the host's slog, and presents it as an
// sdk.Adapter whose channels are sdk.Channels that also implement sdk.Board,
// sdk.Deleter and sdk.Healther (returning sdk.ErrUnsupported when the remote
// channel lacks them). Typed errors keep their sdk.Code, message and
// retry-after across the boundary; a lost process shows as
// sdk.ErrUnavailable.
//
// Launch starts a subprocess; ServeInProcess serves an adapter over plain
// gRPC on a unix socket inside this process (tests, benchmarks). Supervision
// (restarts, many adapters) lives in the plugins package, above this one.
package host
