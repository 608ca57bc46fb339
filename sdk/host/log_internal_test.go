package host

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// lines is a slog handler that keeps messages and attribute counts.
type lines struct {
	mu    sync.Mutex
	msgs  []string
	attrs []int
}

func (l *lines) Enabled(context.Context, slog.Level) bool { return true }
func (l *lines) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	l.attrs = append(l.attrs, r.NumAttrs())
	return nil
}
func (l *lines) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *lines) WithGroup(string) slog.Handler      { return l }

// FuzzLineWriter: whatever bytes the adapter writes, in whatever chunks,
// every complete non-empty line comes out once, in order.
func FuzzLineWriter(f *testing.F) {
	f.Add([]byte("one\ntwo\r\n\nthree"), uint8(3))
	f.Add([]byte("\n\n\n"), uint8(1))
	f.Add(bytes.Repeat([]byte("x"), 70000), uint8(200))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		h := &lines{}
		w := newLineWriter(slog.New(h), slog.LevelDebug)
		step := int(chunk) + 1
		for i := 0; i < len(data); i += step {
			end := min(i+step, len(data))
			if n, err := w.Write(data[i:end]); err != nil || n != end-i {
				t.Fatalf("Write = %d, %v", n, err)
			}
		}
		if len(data) > maxLine {
			return // a long partial line is flushed in pieces; only check no panic
		}
		parts := strings.Split(string(data), "\n")
		var want []string
		for _, l := range parts[:len(parts)-1] { // the last part has no newline yet
			if l = strings.TrimRight(l, "\r"); l != "" {
				want = append(want, l)
			}
		}
		if strings.Join(h.msgs, "\n") != strings.Join(want, "\n") {
			t.Fatalf("logged %q, want %q", h.msgs, want)
		}
	})
}

// FuzzStderrJSON: any JSON object go-plugin decodes from an adapter's
// stderr line, passed on as hclog arguments, becomes a slog record
// without a panic and keeps one attribute per key.
func FuzzStderrJSON(f *testing.F) {
	f.Add(`{"@level":"info","@message":"hi","n":1,"g":{"a":[1,2],"b":{"c":null}}}`)
	f.Add(`{"timestamp":"2026-11-25T13:00:00.000Z","x":"y"}`)
	f.Add(`{"timestamp":5}`)
	f.Fuzz(func(t *testing.T, line string) {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			return
		}
		var args []any
		for k, v := range m {
			args = append(args, k, v)
		}
		h := &lines{}
		l := newHCLog(slog.New(h))
		for _, lv := range []hclog.Level{hclog.NoLevel, hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
			l.Named("bin").Log(lv, "msg", args...)
		}
		if len(h.msgs) != 6 {
			t.Fatalf("logged %d records, want 6", len(h.msgs))
		}
		want := len(m)
		if _, ok := m["timestamp"].(string); ok {
			want-- // a string timestamp becomes the record time
		}
		for _, n := range h.attrs {
			if n != want {
				t.Fatalf("record has %d attributes, want %d", n, want)
			}
		}
	})
}
