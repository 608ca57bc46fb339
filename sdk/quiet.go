package sdk

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// QuietOptions tune NewQuietHandler. The zero value gives the defaults.
type QuietOptions struct {
	// Period is how often a summary of what was held back is written, one
	// line per message (default 1m).
	Period time.Duration
	// Distinct is how many different records with one message (a warning
	// about one file, then another) are written per Period; the others are
	// only counted (default 10).
	Distinct int
	// Forget is how long a record that was written is remembered as
	// written: the same record again within Forget is only counted
	// (default 1h).
	Forget time.Duration
	// Remember bounds the records remembered as written (default 4096);
	// when full the oldest half is forgotten.
	Remember int
	// Now is the clock (default time.Now); AfterFunc schedules a summary
	// (default time.AfterFunc). Tests inject both.
	Now       func() time.Time
	AfterFunc func(time.Duration, func()) func() bool
}

// NewQuietHandler wraps h so that a channel full of hostile or broken
// content cannot fill the disk with logs: a record is written the first
// time, and the same record again (same level, message and attributes,
// including those added by WithAttrs) is only counted for Forget. Records
// that share a message but differ in their attributes (the same warning
// about many files) are written up to Distinct per Period, then counted.
// At the end of every Period in which records were held back, one summary
// per message is written at that message's level: the message, the
// attributes of the last record held back, "suppressed" (how many) and
// "period". A record that carries "suppressed" is such a summary (an
// adapter's, re-emitted by the host) and is always written.
//
// Serve logs through it, and sdk/host re-emits adapter log lines through
// it, so adapters get it without doing anything. Handlers derived with
// WithAttrs and WithGroup share one budget.
func NewQuietHandler(h slog.Handler, o QuietOptions) slog.Handler {
	if o.Period <= 0 {
		o.Period = time.Minute
	}
	if o.Distinct <= 0 {
		o.Distinct = 10
	}
	if o.Forget <= 0 {
		o.Forget = time.Hour
	}
	if o.Remember <= 0 {
		o.Remember = 4096
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.AfterFunc == nil {
		o.AfterFunc = func(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }
	}
	return &quietHandler{h: h, s: &quietState{o: o, written: map[string]time.Time{}, msgs: map[string]*quietMsg{}}}
}

type quietHandler struct {
	h      slog.Handler
	s      *quietState
	prefix string // attributes and groups added with WithAttrs/WithGroup, rendered
}

// quietState is shared by a handler and every handler derived from it.
type quietState struct {
	o       QuietOptions
	mu      sync.Mutex
	written map[string]time.Time // record key → when it was written
	msgs    map[string]*quietMsg // message key → this period's budget
	armed   bool                 // a summary is scheduled
}

// quietMsg is one message's budget and what was held back this period.
type quietMsg struct {
	h          slog.Handler // where the summary goes (with the right attrs)
	level      slog.Level
	msg        string
	written    int // distinct records written this period
	suppressed int
	last       slog.Record // the last record held back
}

func (q *quietHandler) Enabled(ctx context.Context, l slog.Level) bool { return q.h.Enabled(ctx, l) }

func (q *quietHandler) WithAttrs(as []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(q.prefix)
	for _, a := range as {
		writeAttr(&b, a)
	}
	return &quietHandler{h: q.h.WithAttrs(as), s: q.s, prefix: b.String()}
}

func (q *quietHandler) WithGroup(name string) slog.Handler {
	return &quietHandler{h: q.h.WithGroup(name), s: q.s, prefix: q.prefix + "[" + name + "]"}
}

func (q *quietHandler) Handle(ctx context.Context, r slog.Record) error {
	if isSummary(r) {
		// Another quiet handler's summary (an adapter's, re-emitted by
		// the host): at most one per message per period already.
		return q.h.Handle(ctx, r)
	}
	mkey := r.Level.String() + "\x00" + q.prefix + "\x00" + r.Message
	var b strings.Builder
	b.WriteString(mkey)
	r.Attrs(func(a slog.Attr) bool {
		writeAttr(&b, a)
		return true
	})
	rkey := b.String()

	s := q.s
	now := s.o.Now()
	s.mu.Lock()
	m := s.msgs[mkey]
	if m == nil {
		m = &quietMsg{h: q.h, level: r.Level, msg: r.Message}
		s.msgs[mkey] = m
	}
	at, seen := s.written[rkey]
	repeat := seen && now.Sub(at) < s.o.Forget
	if !repeat && m.written < s.o.Distinct {
		m.written++
		if len(s.written) >= s.o.Remember {
			s.forgetOldestLocked()
		}
		s.written[rkey] = now
		s.mu.Unlock()
		return q.h.Handle(ctx, r)
	}
	m.suppressed++
	m.last = r.Clone()
	if !s.armed {
		s.armed = true
		s.o.AfterFunc(s.o.Period, s.flush)
	}
	s.mu.Unlock()
	return nil
}

// forgetOldestLocked drops the older half of the remembered records.
func (s *quietState) forgetOldestLocked() {
	times := make([]time.Time, 0, len(s.written))
	for _, t := range s.written {
		times = append(times, t)
	}
	slices.SortFunc(times, time.Time.Compare) // once per Remember/2 new records
	cut := times[len(times)/2]
	for k, t := range s.written {
		if !t.After(cut) {
			delete(s.written, k)
		}
	}
}

// flush writes one summary per message that had records held back, and
// starts a new period for every message.
func (s *quietState) flush() {
	s.mu.Lock()
	var out []*quietMsg
	for k, m := range s.msgs {
		if m.suppressed > 0 {
			c := *m
			out = append(out, &c)
		}
		delete(s.msgs, k)
	}
	s.armed = false
	period := s.o.Period
	s.mu.Unlock()
	for _, m := range out {
		r := slog.NewRecord(s.o.Now(), m.level, m.msg, 0)
		m.last.Attrs(func(a slog.Attr) bool {
			r.AddAttrs(a)
			return true
		})
		r.AddAttrs(slog.Int("suppressed", m.suppressed), slog.String("period", period.String()))
		_ = m.h.Handle(context.Background(), r)
	}
}

// isSummary reports whether r is a summary a quiet handler wrote.
func isSummary(r slog.Record) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		found = a.Key == "suppressed"
		return !found
	})
	return found
}

func writeAttr(b *strings.Builder, a slog.Attr) {
	b.WriteByte('\x00')
	b.WriteString(a.Key)
	b.WriteByte('=')
	fmt.Fprint(b, a.Value.Resolve().Any())
}
