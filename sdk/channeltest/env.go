package channeltest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/remora-p2p/remora/sdk"
)

// prompt bounds how long Subscribe may take to return after its context
// ends, and Publish to fail on a cancelled context.
const prompt = 5 * time.Second

// backend is where a case gets its adapter from: the in-process value, or a
// subprocess started on first use.
type backend interface {
	adapter(t *testing.T) sdk.Adapter
	// stop ends the adapter (subprocess mode: stops the process, and the
	// next adapter call starts a new one). All its channels are closed by
	// then. It may be called more than once.
	stop(t *testing.T)
}

type inProcess struct{ a sdk.Adapter }

func (b inProcess) adapter(*testing.T) sdk.Adapter { return b.a }
func (inProcess) stop(*testing.T)                  {}

// env is one case's state: its harness, deadline and open channels.
type env struct {
	t    *testing.T
	ctx  context.Context // the case deadline
	cfg  config
	h    Harness
	b    backend
	caps sdk.Capabilities
	// pub is the member that publishes, sub the one that subscribes: a
	// different account where the harness has one.
	pub, sub int
	open     map[int]sdk.Channel
	// published maps every payload the case produced to its label, so the
	// collector tells our items from foreign ones.
	published *payloads
}

// payloads is the set of payloads a case produced; the collector reads it
// from the subscription goroutine while the case adds more.
type payloads struct {
	mu sync.Mutex
	m  map[string]int
}

func (p *payloads) add(b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.m[string(b)] = len(p.m)
}

func (p *payloads) has(b []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.m[string(b)]
	return ok
}

func (e *env) settle() time.Duration {
	d := e.cfg.settle
	if p := 2 * e.caps.PollInterval.D(); p > d {
		d = p
	}
	return d
}

// channel returns member m's open channel, opening it if needed.
func (e *env) channel(m int) sdk.Channel {
	e.t.Helper()
	if ch, ok := e.open[m]; ok {
		return ch
	}
	ch, err := e.h.Open(e.ctx, e.t, e.b.adapter(e.t), m)
	if err != nil {
		e.t.Fatalf("open member %d: %v", m, err)
	}
	if ch == nil {
		e.t.Fatalf("open member %d: harness returned a nil channel", m)
	}
	e.open[m] = ch
	if e.caps.MaxPayload == 0 {
		e.caps = ch.Capabilities()
	}
	return ch
}

// closeAll closes every open channel.
func (e *env) closeAll() {
	e.t.Helper()
	for m, ch := range e.open {
		if err := ch.Close(); err != nil {
			e.t.Errorf("close member %d: %v", m, err)
		}
		delete(e.open, m)
	}
}

// restart closes every channel and restarts the adapter; the next channel
// call reopens with the same config and state dir.
func (e *env) restart() {
	e.t.Helper()
	e.closeAll()
	e.b.stop(e.t)
}

// payload returns a fresh unique payload of n units: random bytes on binary
// channels, base64url characters on text channels.
func (e *env) payload(n int) []byte {
	var p []byte
	if e.caps.Text {
		raw := make([]byte, base64.RawURLEncoding.DecodedLen(n)+3)
		rand.Read(raw)
		p = []byte(base64.RawURLEncoding.EncodeToString(raw)[:n])
	} else {
		p = make([]byte, n)
		rand.Read(p)
	}
	e.published.add(p)
	return p
}

// size is the payload size for ordinary items.
func (e *env) size() int {
	n := 1024
	if e.caps.Text {
		n = 200
	}
	return min(n, e.caps.MaxPayload)
}

func key() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// items returns n fresh items addressed to the subscriber.
func (e *env) items(n int) []sdk.PublishItem {
	items := make([]sdk.PublishItem, n)
	for i := range items {
		items[i] = e.item(e.payload(e.size()))
	}
	return items
}

func (e *env) item(data []byte) sdk.PublishItem {
	it := sdk.PublishItem{Data: data, IdempotencyKey: key()}
	if e.caps.Addressed {
		if a := e.h.Address(e.sub); a != "" {
			it.To = []string{a}
		}
	}
	return it
}

// publishRaw publishes items, split by MaxBatch, and returns one result per
// item. An error from Publish itself fails the case.
func (e *env) publishRaw(ch sdk.Channel, items []sdk.PublishItem) []sdk.PublishResult {
	e.t.Helper()
	batch := e.caps.MaxBatch
	if batch <= 0 {
		batch = len(items)
	}
	var out []sdk.PublishResult
	for len(items) > 0 {
		n := min(batch, len(items))
		resp, err := ch.Publish(e.ctx, sdk.PublishRequest{Items: items[:n]})
		if err != nil {
			e.t.Fatalf("publish %d items: %v", n, err)
		}
		if len(resp.Results) != n {
			e.t.Fatalf("publish %d items: got %d results, want one per item", n, len(resp.Results))
		}
		out = append(out, resp.Results...)
		items = items[n:]
	}
	return out
}

// publish publishes items and fails the case if any item fails.
func (e *env) publish(ch sdk.Channel, items []sdk.PublishItem) []sdk.PublishResult {
	e.t.Helper()
	res := e.publishRaw(ch, items)
	for i, r := range res {
		if r.Err != nil {
			e.t.Fatalf("publish item %d of %d: %v", i, len(res), r.Err)
		}
		if r.ID == "" {
			e.t.Errorf("publish item %d of %d: empty ID", i, len(res))
		}
	}
	return res
}

// datas returns the payloads of items.
func datas(items []sdk.PublishItem) [][]byte {
	out := make([][]byte, len(items))
	for i, it := range items {
		out[i] = it.Data
	}
	return out
}

// unsupported reports whether err says the hook or capability is missing,
// and skips the case with the reason if so.
func (e *env) skipIfUnsupported(what string, err error) {
	e.t.Helper()
	if errors.Is(err, sdk.ErrUnsupported) {
		e.t.Skipf("%s: harness or channel does not support it: %v", what, err)
	}
}

// sleep waits d or until the case deadline.
func (e *env) sleep(d time.Duration) {
	select {
	case <-time.After(d):
	case <-e.ctx.Done():
	}
}

// eventually retries f until it returns nil or the case deadline passes,
// then fails with f's last error.
func (e *env) eventually(what string, f func() error) {
	e.t.Helper()
	for {
		err := f()
		if err == nil {
			return
		}
		select {
		case <-e.ctx.Done():
			e.t.Fatalf("%s: %v (gave up at the case deadline)", what, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func short(b []byte) string {
	if len(b) > 12 {
		return fmt.Sprintf("%x…(%d bytes)", b[:12], len(b))
	}
	return fmt.Sprintf("%x", b)
}
