// Package hosttest provides an in-memory adapter for testing and
// benchmarking hosts (sdk/host, plugins): a log with numeric cursors, a
// board, delete and health, optional persistence in the state directory
// (so a restarted process resumes), and failure injection through its
// configuration. It is not a channel anyone should use.
package hosttest

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/remora-p2p/remora/sdk"
)

// Name is the adapter's name.
const Name = "mem"

// Config is the channel configuration the adapter accepts (as JSON).
type Config struct {
	// Noop makes Publish discard items (for benchmarks): it returns IDs and
	// stores nothing.
	Noop bool `json:"noop,omitempty"`
	// Fail makes every call on the channel fail with an *sdk.Error of
	// FailCode, FailMessage and RetryAfter; FailConfigure makes Configure
	// itself fail so.
	Fail          bool         `json:"fail,omitempty"`
	FailConfigure bool         `json:"fail_configure,omitempty"`
	FailCode      sdk.Code     `json:"fail_code,omitempty"`
	FailMessage   string       `json:"fail_message,omitempty"`
	RetryAfter    sdk.Duration `json:"retry_after,omitempty"`
	// FailReopen makes Configure fail as FailConfigure does, but only when
	// the state directory already holds a log: on the reopen after a
	// restart.
	FailReopen bool `json:"fail_reopen,omitempty"`
	// ItemFail makes Publish fail every item whose data is "fail" with
	// FailCode (the others succeed).
	ItemFail bool `json:"item_fail,omitempty"`
	// CrashOn makes the process exit with status 3 when an item with this
	// data is published (subprocess tests only).
	CrashOn string `json:"crash_on,omitempty"`
	// Plain makes the channel implement none of the optional interfaces.
	Plain bool `json:"plain,omitempty"`
	// Log makes each Publish log one line per item at INFO.
	Log bool `json:"log,omitempty"`
}

// Adapter is the in-memory adapter.
type Adapter struct{}

// New returns the adapter.
func New() sdk.Adapter { return Adapter{} }

// Caps are the capabilities of every mem channel.
var Caps = sdk.Capabilities{
	MaxPayload:  1 << 20,
	Counting:    sdk.CountBytes,
	Board:       true,
	Push:        true,
	Delete:      sdk.DeleteOwn,
	Idempotency: sdk.Idempotency{Level: sdk.IdempotencyStrong},
	RateLimit:   sdk.RateLimit{Requests: 100, Per: sdk.Duration(time.Second)},
	Retention:   sdk.Duration(24 * time.Hour),
}

func (Adapter) Info() sdk.Info {
	return sdk.Info{Name: Name, Version: "test", Summary: "in-memory test adapter", Defaults: Caps}
}

func (Adapter) Configure(ctx context.Context, req sdk.ConfigureRequest) (sdk.Channel, error) {
	var cfg Config
	if len(req.Config) > 0 {
		if err := json.Unmarshal(req.Config, &cfg); err != nil {
			return nil, sdk.Errorf(sdk.CodeBadConfig, "mem: config: %v", err)
		}
	}
	if cfg.FailReopen && req.StateDir != "" {
		if _, err := os.Stat(filepath.Join(req.StateDir, "mem.log")); err == nil {
			cfg.FailConfigure = true
		}
	}
	if cfg.FailConfigure {
		return nil, &sdk.Error{Code: cfg.FailCode, Message: cfg.FailMessage, RetryAfter: cfg.RetryAfter.D()}
	}
	ch := &Channel{cfg: cfg, id: req.ChannelID, board: map[string]sdk.BoardEntry{}, keys: map[string]string{},
		wake: make(chan struct{}), logger: req.Logger}
	if req.StateDir != "" {
		if err := ch.load(filepath.Join(req.StateDir, "mem.log")); err != nil {
			return nil, sdk.Errorf(sdk.CodeUnavailable, "mem: load state: %w", err)
		}
	}
	if cfg.Plain {
		return plain{ch}, nil
	}
	return ch, nil
}

// Channel is one mem channel.
type Channel struct {
	cfg    Config
	id     string
	logger *slog.Logger

	mu      sync.Mutex
	items   []sdk.Delivery
	keys    map[string]string // idempotency key -> ID
	board   map[string]sdk.BoardEntry
	deleted map[string]bool
	n       uint64
	wake    chan struct{} // closed and replaced on every append
	file    *os.File
	closed  bool
}

// plain hides the optional interfaces.
type plain struct{ c *Channel }

func (p plain) Capabilities() sdk.Capabilities {
	c := p.c.Capabilities()
	c.Board, c.Delete = false, sdk.DeleteNone
	return c
}
func (p plain) Publish(ctx context.Context, r sdk.PublishRequest) (sdk.PublishResponse, error) {
	return p.c.Publish(ctx, r)
}
func (p plain) Subscribe(ctx context.Context, r sdk.SubscribeRequest, s sdk.Sink) error {
	return p.c.Subscribe(ctx, r, s)
}
func (p plain) Close() error { return p.c.Close() }

func (c *Channel) fail() error {
	if !c.cfg.Fail {
		return nil
	}
	return &sdk.Error{Code: c.cfg.FailCode, Message: c.cfg.FailMessage, RetryAfter: c.cfg.RetryAfter.D()}
}

func (c *Channel) Capabilities() sdk.Capabilities { return Caps }

func (c *Channel) Publish(ctx context.Context, req sdk.PublishRequest) (sdk.PublishResponse, error) {
	if err := c.fail(); err != nil {
		return sdk.PublishResponse{}, err
	}
	if err := ctx.Err(); err != nil {
		return sdk.PublishResponse{}, err
	}
	resp := sdk.PublishResponse{Results: make([]sdk.PublishResult, len(req.Items))}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return sdk.PublishResponse{}, errors.New("mem: channel closed")
	}
	for i, it := range req.Items {
		if c.cfg.CrashOn != "" && string(it.Data) == c.cfg.CrashOn {
			os.Exit(3)
		}
		if c.cfg.ItemFail && string(it.Data) == "fail" {
			resp.Results[i].Err = sdk.Errorf(c.cfg.FailCode, "mem: item %d refused", i)
			continue
		}
		if len(it.Data) > Caps.MaxPayload {
			resp.Results[i].Err = sdk.Errorf(sdk.CodeTooLarge, "mem: item of %d bytes exceeds %d", len(it.Data), Caps.MaxPayload)
			continue
		}
		c.n++
		id := strconv.FormatUint(c.n, 36)
		if c.cfg.Noop {
			resp.Results[i].ID = id
			continue
		}
		if prev, ok := c.keys[it.IdempotencyKey]; ok && it.IdempotencyKey != "" {
			resp.Results[i].ID = prev
			continue
		}
		d := sdk.Delivery{ID: id, Data: append([]byte(nil), it.Data...), Cursor: []byte(strconv.Itoa(len(c.items) + 1)),
			From: "mem", Time: time.Now()}
		if err := c.persist(d); err != nil {
			resp.Results[i].Err = sdk.Errorf(sdk.CodeUnavailable, "mem: persist: %w", err)
			continue
		}
		c.items = append(c.items, d)
		if it.IdempotencyKey != "" {
			c.keys[it.IdempotencyKey] = id
		}
		resp.Results[i].ID = id
		if c.cfg.Log && c.logger != nil {
			c.logger.Info("published", "id", id, "bytes", len(it.Data))
		}
	}
	close(c.wake)
	c.wake = make(chan struct{})
	return resp, nil
}

// Subscribe delivers from the cursor on, then waits for new items.
func (c *Channel) Subscribe(ctx context.Context, req sdk.SubscribeRequest, sink sdk.Sink) error {
	if err := c.fail(); err != nil {
		return err
	}
	next := 0
	if len(req.Cursor) > 0 {
		n, err := strconv.Atoi(string(req.Cursor))
		if err != nil || n < 0 {
			return sdk.Errorf(sdk.CodeCursorInvalid, "mem: cursor %q is not one of mine", req.Cursor)
		}
		next = n
	}
	for {
		c.mu.Lock()
		if next > len(c.items) {
			c.mu.Unlock()
			return sdk.Errorf(sdk.CodeCursorInvalid, "mem: cursor %d is past the end (%d)", next, len(c.items))
		}
		pending := c.items[next:len(c.items):len(c.items)]
		wake := c.wake
		deleted := c.deleted
		c.mu.Unlock()
		for _, d := range pending {
			next++
			if deleted[d.ID] {
				continue
			}
			if err := sink.Deliver(ctx, d); err != nil {
				return err
			}
		}
		if len(pending) > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		}
	}
}

func (c *Channel) Put(ctx context.Context, req sdk.PutRequest) error {
	if err := c.fail(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.board[req.Key] = sdk.BoardEntry{Key: req.Key, Value: append([]byte(nil), req.Value...), Time: time.Now()}
	return nil
}

func (c *Channel) Get(ctx context.Context, req sdk.GetRequest) (sdk.GetResponse, error) {
	if err := c.fail(); err != nil {
		return sdk.GetResponse{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var out sdk.GetResponse
	if len(req.Keys) == 0 {
		for _, e := range c.board {
			out.Entries = append(out.Entries, e)
		}
		return out, nil
	}
	for _, k := range req.Keys {
		if e, ok := c.board[k]; ok {
			out.Entries = append(out.Entries, e)
		}
	}
	return out, nil
}

func (c *Channel) Delete(ctx context.Context, req sdk.DeleteRequest) (sdk.DeleteResponse, error) {
	if err := c.fail(); err != nil {
		return sdk.DeleteResponse{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out := sdk.DeleteResponse{Errors: make([]error, len(req.IDs))}
	next := make(map[string]bool, len(c.deleted)+len(req.IDs))
	for k := range c.deleted {
		next[k] = true
	}
	for i, id := range req.IDs {
		if _, err := strconv.ParseUint(id, 36, 64); err != nil {
			out.Errors[i] = sdk.Errorf(sdk.CodeNotFound, "mem: %q is not an item ID", id)
			continue
		}
		next[id] = true
	}
	c.deleted = next
	return out, nil
}

func (c *Channel) Health(ctx context.Context) sdk.Health {
	c.mu.Lock()
	defer c.mu.Unlock()
	return sdk.Health{State: sdk.HealthOK, Message: "in memory", Counters: map[string]int64{"items": int64(len(c.items))}}
}

func (c *Channel) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.file != nil {
		err := c.file.Close()
		c.file = nil
		return err
	}
	return nil
}

// persist appends d to the state file: ID, data, each length-prefixed.
func (c *Channel) persist(d sdk.Delivery) error {
	if c.file == nil {
		return nil
	}
	var rec []byte
	for _, f := range [][]byte{[]byte(d.ID), d.Data} {
		rec = binary.AppendUvarint(rec, uint64(len(f)))
		rec = append(rec, f...)
	}
	_, err := c.file.Write(rec)
	return err
}

func (c *Channel) load(path string) error {
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for len(b) > 0 {
		var fields [2][]byte
		for i := range fields {
			n, k := binary.Uvarint(b)
			if k <= 0 || uint64(len(b)-k) < n {
				return fmt.Errorf("%s: truncated record: %w", path, io.ErrUnexpectedEOF)
			}
			fields[i] = b[k : k+int(n)]
			b = b[k+int(n):]
		}
		c.items = append(c.items, sdk.Delivery{ID: string(fields[0]), Data: fields[1],
			Cursor: []byte(strconv.Itoa(len(c.items) + 1)), From: "mem"})
		if v, err := strconv.ParseUint(string(fields[0]), 36, 64); err == nil && v > c.n {
			c.n = v
		}
	}
	c.file, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	return err
}
