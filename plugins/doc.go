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
// A Supervisor runs one process per adapter kind (or one for the built-ins
// named in Options.Together, served by sdk.ServeMany), started on first use,
// hosting every channel of that kind. The channels it hands out stay valid
// across restarts: when a process dies it is restarted with exponential
// backoff and jitter and its channels are configured again; meanwhile calls
// fail with sdk.ErrUnavailable (RetryAfter says when the next attempt is),
// and a Subscribe cut by the crash returns sdk.ErrUnavailable so the
// caller resubscribes from its last cursor. Configuration errors
// (sdk.CodeBadConfig, CodeAuthFailed, CodeNeedsUserAction) are reported,
// never retried. Each adapter process receives only the secrets of its own
// channels and a minimal environment.
//
// Channel content is hostile ground, so every adapter process runs under a
// memory limit (Options.MemoryLimit, default 1 GiB beyond what it holds at
// its handshake: RLIMIT_DATA, and GOMEMLIMIT at half of it for Go
// adapters), and a watch reads its resident memory and checks that it
// answers every WatchEvery. A process over its limit or silent for
// HangAfter is killed and restarted like a crashed one; for an hour its
// channels' Health is degraded and says why and which channels share the
// process, which is what `remora doctor` shows.
package plugins
