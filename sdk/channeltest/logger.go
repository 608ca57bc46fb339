package channeltest

import (
	"log/slog"
	"testing"
)

// Logger returns a logger for ConfigureRequest.Logger that writes the
// adapter's records (debug and up) to t.Log, so they show with the case
// that produced them, and drops them once t has ended.
func Logger(t testing.TB) *slog.Logger {
	w := &logWriter{t: t}
	t.Cleanup(w.close)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
