package host

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// slogHCLog is an hclog.Logger that forwards to a slog.Logger. go-plugin
// logs through it, and re-emits each JSON line of the adapter's stderr
// through it with the line's level, message and attributes; the adapter's
// own time travels as the "timestamp" argument and becomes the record time.
type slogHCLog struct {
	l       *slog.Logger
	name    string
	implied []any
}

var _ hclog.Logger = (*slogHCLog)(nil)

func newHCLog(l *slog.Logger) *slogHCLog { return &slogHCLog{l: l} }

func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug, hclog.NoLevel:
		return slog.LevelDebug
	case hclog.Info:
		return slog.LevelInfo
	case hclog.Warn:
		return slog.LevelWarn
	}
	return slog.LevelError
}

func (h *slogHCLog) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off {
		return
	}
	ctx := context.Background()
	lv := slogLevel(level)
	if !h.l.Enabled(ctx, lv) {
		return
	}
	t := time.Now()
	all := append(append([]any(nil), h.implied...), args...)
	var attrs []slog.Attr
	for i := 0; i < len(all); i += 2 {
		key := fmt.Sprint(all[i])
		if i+1 >= len(all) {
			attrs = append(attrs, slog.Any("!BADKEY", all[i]))
			break
		}
		val := all[i+1]
		if key == "timestamp" {
			if s, ok := val.(string); ok {
				if pt, err := time.Parse(hclog.TimeFormat, s); err == nil && !pt.IsZero() && pt.Year() > 1 {
					t = pt
				}
				continue
			}
		}
		attrs = append(attrs, attrOf(strings.TrimPrefix(key, "@"), val))
	}
	sort.SliceStable(attrs, func(i, j int) bool { return attrs[i].Key < attrs[j].Key })
	r := slog.NewRecord(t, lv, msg, 0)
	r.AddAttrs(attrs...)
	_ = h.l.Handler().Handle(ctx, r)
}

// attrOf turns a decoded JSON value back into an attribute; objects become
// groups so nested slog groups in the adapter stay nested.
func attrOf(key string, v any) slog.Attr {
	m, ok := v.(map[string]any)
	if !ok || len(m) == 0 { // slog would drop an empty group
		return slog.Any(key, v)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	group := make([]any, 0, len(keys))
	for _, k := range keys {
		group = append(group, attrOf(k, m[k]))
	}
	return slog.Group(key, group...)
}

func (h *slogHCLog) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *slogHCLog) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *slogHCLog) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *slogHCLog) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *slogHCLog) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *slogHCLog) enabled(l hclog.Level) bool {
	return h.l.Enabled(context.Background(), slogLevel(l))
}

func (h *slogHCLog) IsTrace() bool { return h.enabled(hclog.Trace) }
func (h *slogHCLog) IsDebug() bool { return h.enabled(hclog.Debug) }
func (h *slogHCLog) IsInfo() bool  { return h.enabled(hclog.Info) }
func (h *slogHCLog) IsWarn() bool  { return h.enabled(hclog.Warn) }
func (h *slogHCLog) IsError() bool { return h.enabled(hclog.Error) }

func (h *slogHCLog) ImpliedArgs() []any { return h.implied }

func (h *slogHCLog) With(args ...any) hclog.Logger {
	return &slogHCLog{l: h.l, name: h.name, implied: append(append([]any(nil), h.implied...), args...)}
}

func (h *slogHCLog) Name() string { return h.name }

func (h *slogHCLog) Named(name string) hclog.Logger {
	n := name
	if h.name != "" {
		n = h.name + "." + name
	}
	return &slogHCLog{l: h.l, name: n, implied: h.implied}
}

func (h *slogHCLog) ResetNamed(name string) hclog.Logger {
	return &slogHCLog{l: h.l, name: name, implied: h.implied}
}

// SetLevel is a no-op: the slog handler decides.
func (h *slogHCLog) SetLevel(hclog.Level) {}

// GetLevel is the lowest level the slog handler accepts; go-plugin skips
// parsing stderr lines below it.
func (h *slogHCLog) GetLevel() hclog.Level {
	for _, l := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if h.enabled(l) {
			return l
		}
	}
	return hclog.Off
}

func (h *slogHCLog) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

func (h *slogHCLog) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return newLineWriter(h.l, slog.LevelInfo)
}

// lineWriter logs every line written to it at a fixed level. go-plugin
// writes the adapter's forwarded stdout and stderr (fmt.Print in the
// adapter, not its log) here.
type lineWriter struct {
	l     *slog.Logger
	level slog.Level
	mu    sync.Mutex
	buf   []byte
}

func newLineWriter(l *slog.Logger, level slog.Level) *lineWriter {
	return &lineWriter{l: l, level: level}
}

// maxLine bounds a buffered partial line; longer lines are logged in pieces.
const maxLine = 64 << 10

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			if len(w.buf) > maxLine {
				w.l.Log(context.Background(), w.level, string(w.buf))
				w.buf = w.buf[:0]
			}
			return len(p), nil
		}
		if line := bytes.TrimRight(w.buf[:i], "\r"); len(line) > 0 {
			w.l.Log(context.Background(), w.level, string(line))
		}
		w.buf = w.buf[i+1:]
	}
}

// tail keeps the last few lines of the adapter's raw stderr, for errors
// such as "exited before the handshake".
type tail struct {
	mu    sync.Mutex
	lines []string
	part  []byte
	oom   string // the first line that said the process ran out of memory
}

const tailLines = 8

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.part = append(t.part, p...)
	for {
		i := bytes.IndexByte(t.part, '\n')
		if i < 0 {
			if len(t.part) > 4096 {
				t.part = t.part[:4096]
			}
			return len(p), nil
		}
		if line := strings.TrimSpace(string(t.part[:i])); line != "" {
			if t.oom == "" && outOfMemory(line) {
				t.oom = line
			}
			t.lines = append(t.lines, line)
			if len(t.lines) > tailLines {
				t.lines = t.lines[len(t.lines)-tailLines:]
			}
		}
		t.part = t.part[i+1:]
	}
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}

// oomLine is the first stderr line that said the process ran out of memory
// ("" if none): the Go runtime's fatal error is followed by a goroutine
// dump far longer than the tail.
func (t *tail) oomLine() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.oom
}

// outOfMemory reports whether a stderr line says the process ran out of
// memory: the Go runtime's fatal error, a failed thread creation, a C
// allocator's or another runtime's message.
func outOfMemory(line string) bool {
	s := strings.ToLower(line)
	for _, m := range []string{"out of memory", "cannot allocate memory", "pthread_create failed", "failed to allocate", "bad_alloc", "memoryerror"} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}
