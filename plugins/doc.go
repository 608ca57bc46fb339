// Package plugins is the host side of adapters: it finds them, launches
// them as go-plugin subprocesses through sdk/host, and supervises them.
//
// Built-in adapters ship inside the one remora binary and run as
// `<the remora executable> adapter NAME` (Builtin). Third-party adapters
// are executables installed with Install into the plugins directory, copied
// with mode 0755 and pinned by SHA-256 in its manifest; they are started
// only from there and only if the file still has that checksum. Nothing is
// ever looked up in PATH.
//
// A Supervisor runs one process per adapter kind, started on first use,
// hosting every channel of that kind. The channels it hands out stay valid
// across restarts: when a process dies it is restarted with exponential
// backoff and jitter and its channels are configured again; meanwhile calls
// fail with sdk.ErrUnavailable (RetryAfter says when the next attempt is),
// and a Subscribe cut by the crash returns sdk.ErrUnavailable so the
// caller resubscribes from its last cursor. Configuration errors
// (sdk.CodeBadConfig, CodeAuthFailed, CodeNeedsUserAction) are reported,
// never retried. Each adapter process receives only the secrets of its own
// channels and a minimal environment.
package plugins
