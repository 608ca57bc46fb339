package channeltest_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/remora-p2p/remora/sdk"
)

// The kit's own reference channel: an in-memory service shared by every
// member of a harness, correct unless a defect is switched on. The kit
// must pass it clean and fail it for each defect.

type memItem struct {
	seq  uint64 // arrival order
	ts   int64  // the service's sort key (InsertBackdated goes below)
	id   string
	data []byte
}

type memStore struct {
	mu     sync.Mutex
	epoch  uint32
	seq    uint64
	minTS  int64
	maxTS  int64
	items  []memItem
	keys   map[string]string
	board  map[string][]byte
	subs   int           // Subscribe calls (defect "onesub")
	change chan struct{} // closed on every change
}

func newMemStore() *memStore {
	return &memStore{keys: map[string]string{}, board: map[string][]byte{}, change: make(chan struct{})}
}

func (s *memStore) changed() {
	close(s.change)
	s.change = make(chan struct{})
}

func (s *memStore) add(data []byte, ts int64) string {
	s.seq++
	id := "m" + strconv.FormatUint(s.seq, 10)
	s.items = append(s.items, memItem{seq: s.seq, ts: ts, id: id, data: append([]byte(nil), data...)})
	s.changed()
	return id
}

var (
	storesMu sync.Mutex
	stores   = map[string]*memStore{}
)

// memMax is the reference channel's MaxPayload: 256 times it is the
// kit's largest oversized item, which the "readall" defect reads whole.
const memMax = 32 << 10

type memAdapter struct {
	defect string
	text   bool // a text channel: counts code points, checks the payloads are text
}

func (a memAdapter) caps() sdk.Capabilities {
	c := sdk.Capabilities{MaxPayload: memMax, Counting: sdk.CountBytes, Board: true, Push: true,
		Delete: sdk.DeleteAny, Idempotency: sdk.Idempotency{Level: sdk.IdempotencyStrong}}
	if a.text {
		c.Text, c.Counting = true, sdk.CountCodepoints
	}
	return c
}

func (a memAdapter) Info() sdk.Info {
	return sdk.Info{Name: "mem", Version: "test", Defaults: a.caps()}
}

func (a memAdapter) Configure(ctx context.Context, req sdk.ConfigureRequest) (sdk.Channel, error) {
	var cfg struct{ Store string }
	if err := json.Unmarshal(req.Config, &cfg); err != nil {
		return nil, sdk.Errorf(sdk.CodeBadConfig, "mem: %v", err)
	}
	storesMu.Lock()
	s := stores[cfg.Store]
	storesMu.Unlock()
	if s == nil {
		return nil, sdk.Errorf(sdk.CodeNotFound, "mem: no store %q", cfg.Store)
	}
	ch := &memChannel{s: s, a: a, defect: a.defect}
	if a.defect == "leak" {
		go func() { select {} }()
	}
	return ch, nil
}

type memChannel struct {
	s      *memStore
	a      memAdapter
	defect string
	life   sdk.Lifecycle
}

func (c *memChannel) Capabilities() sdk.Capabilities { return c.a.caps() }

// begin starts a call through the channel's Lifecycle, or (defect
// "afterclose") lets calls through after Close.
func (c *memChannel) begin(ctx context.Context) (context.Context, func(), error) {
	if c.defect == "afterclose" {
		return ctx, func() {}, nil
	}
	return c.life.Begin(ctx)
}

func (c *memChannel) Publish(ctx context.Context, req sdk.PublishRequest) (sdk.PublishResponse, error) {
	ctx, end, err := c.begin(ctx)
	if err != nil {
		return sdk.PublishResponse{}, err
	}
	defer end()
	if err := ctx.Err(); err != nil {
		return sdk.PublishResponse{}, err
	}
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := sdk.PublishResponse{Results: make([]sdk.PublishResult, len(req.Items))}
	for i, it := range req.Items {
		limit := memMax
		switch c.defect {
		case "nolimit":
			limit = 1 << 30
		case "rejectexact":
			limit = memMax - 1
		}
		if err := sdk.CheckKey("idempotency key", it.IdempotencyKey); err != nil && c.defect != "badkey" {
			resp.Results[i].Err = err
			continue
		}
		if c.a.text && !isBase64URL(it.Data) {
			resp.Results[i].Err = fmt.Errorf("mem: text channel got a non-text item")
			continue
		}
		if len(it.Data) > limit {
			resp.Results[i].Err = sdk.Errorf(sdk.CodeTooLarge, "mem: %d bytes", len(it.Data))
			continue
		}
		if id, ok := s.keys[it.IdempotencyKey]; ok && c.defect != "dupkey" {
			resp.Results[i].ID = id
			continue
		}
		s.maxTS++
		id := s.add(it.Data, s.maxTS)
		s.keys[it.IdempotencyKey] = id
		resp.Results[i].ID = id
	}
	return resp, nil
}

// cursor: 4 bytes epoch, 8 bytes position (seq, or ts with the
// "backdated" defect).
func (c *memChannel) Subscribe(ctx context.Context, req sdk.SubscribeRequest, sink sdk.Sink) error {
	if c.defect == "onesub" { // a second Subscribe takes over from the first
		c.s.mu.Lock()
		c.s.subs++
		me := c.s.subs
		c.s.mu.Unlock()
		inner := sink
		sink = sdk.SinkFunc(func(ctx context.Context, d sdk.Delivery) error {
			c.s.mu.Lock()
			last := c.s.subs
			c.s.mu.Unlock()
			if me != last {
				return nil // lost to the newer subscription
			}
			return inner.Deliver(ctx, d)
		})
	}
	done := c.life.Done()
	if c.defect == "closeignored" {
		done = nil
	} else {
		var end func()
		var err error
		ctx, end, err = c.begin(ctx)
		if err != nil {
			return err
		}
		defer end()
	}
	pos := int64(-1 << 62)
	s := c.s
	s.mu.Lock()
	epoch := s.epoch
	s.mu.Unlock()
	if req.Cursor != nil {
		if len(req.Cursor) != 12 {
			return sdk.Errorf(sdk.CodeCursorInvalid, "mem: bad cursor")
		}
		if binary.BigEndian.Uint32(req.Cursor) != epoch && c.defect != "noinvalid" {
			return sdk.Errorf(sdk.CodeCursorInvalid, "mem: store was reset")
		}
		if c.defect != "redeliver" {
			pos = int64(binary.BigEndian.Uint64(req.Cursor[4:]))
		}
	}
	for {
		s.mu.Lock()
		var batch []memItem
		for _, it := range s.items {
			if c.key(it) > pos {
				batch = append(batch, it)
			}
		}
		wait := s.change
		s.mu.Unlock()
		sort.Slice(batch, func(i, j int) bool { return c.key(batch[i]) < c.key(batch[j]) })
		for _, it := range batch {
			d := sdk.Delivery{ID: it.id, Data: it.data, Cursor: binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(nil, epoch), uint64(c.key(it)))}
			if len(it.data) > memMax && c.defect != "nolimit" {
				if c.defect == "readall" { // reads the whole item before it looks at the size
					whole, _ := io.ReadAll(bytes.NewReader(it.data))
					d.Data = whole[:0]
				}
				d.Data, d.Skip = nil, true // planted past the limit: skipped, the cursor moves on
			}
			switch c.defect {
			case "corrupt":
				d.Data = append([]byte{d.Data[0] ^ 1}, d.Data[1:]...)
			case "nocursor":
				d.Cursor = nil
			}
			if err := sink.Deliver(ctx, d); err != nil {
				return err
			}
			pos = c.key(it)
		}
		if c.defect == "ignorectx" {
			<-c.life.Done()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-done:
			return sdk.ErrClosed
		case <-wait:
		}
	}
}

func (c *memChannel) key(it memItem) int64 {
	if c.defect == "backdated" {
		return it.ts
	}
	return int64(it.seq)
}

func (c *memChannel) Put(ctx context.Context, req sdk.PutRequest) error {
	_, end, err := c.begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	if err := sdk.CheckKey("board key", req.Key); err != nil && c.defect != "badkey" {
		return err
	}
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if _, ok := c.s.board[req.Key]; ok && c.defect == "boardstale" {
		return nil
	}
	c.s.board[req.Key] = append([]byte(nil), req.Value...)
	return nil
}

func (c *memChannel) Get(ctx context.Context, req sdk.GetRequest) (sdk.GetResponse, error) {
	_, end, err := c.begin(ctx)
	if err != nil {
		return sdk.GetResponse{}, err
	}
	defer end()
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	var resp sdk.GetResponse
	keys := req.Keys
	if len(keys) == 0 {
		for k := range c.s.board {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		if v, ok := c.s.board[k]; ok {
			resp.Entries = append(resp.Entries, sdk.BoardEntry{Key: k, Value: v})
		}
	}
	return resp, nil
}

func (c *memChannel) Delete(ctx context.Context, req sdk.DeleteRequest) (sdk.DeleteResponse, error) {
	_, end, err := c.begin(ctx)
	if err != nil {
		return sdk.DeleteResponse{}, err
	}
	defer end()
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	resp := sdk.DeleteResponse{Errors: make([]error, len(req.IDs))}
	if c.defect == "nodelete" {
		return resp, nil
	}
	for _, id := range req.IDs {
		for i, it := range c.s.items {
			if it.id == id {
				c.s.items = append(c.s.items[:i], c.s.items[i+1:]...)
				break
			}
		}
	}
	return resp, nil
}

func (c *memChannel) Close() error {
	if c.defect == "closeignored" { // Close returns but cancels nothing
		go c.life.Close(nil)
		return nil
	}
	return c.life.Close(nil)
}

// memHarness gives each case a fresh store with two members.
type memHarness struct{ name string }

func newMemHarness(t *testing.T) *memHarness {
	name := fmt.Sprintf("%s-%d", t.Name(), time.Now().UnixNano())
	storesMu.Lock()
	stores[name] = newMemStore()
	storesMu.Unlock()
	t.Cleanup(func() { storesMu.Lock(); delete(stores, name); storesMu.Unlock() })
	return &memHarness{name: name}
}

func (h *memHarness) store() *memStore {
	storesMu.Lock()
	defer storesMu.Unlock()
	return stores[h.name]
}

func (h *memHarness) Members() int       { return 2 }
func (h *memHarness) Address(int) string { return "" }

func (h *memHarness) Open(ctx context.Context, t *testing.T, a sdk.Adapter, m int) (sdk.Channel, error) {
	cfg, _ := json.Marshal(map[string]string{"store": h.name})
	return a.Configure(ctx, sdk.ConfigureRequest{ChannelID: fmt.Sprint(m), Config: cfg})
}

func (h *memHarness) InvalidateCursor(ctx context.Context, t *testing.T) error {
	s := h.store()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.epoch++
	s.changed()
	return nil
}

func (h *memHarness) InsertBackdated(ctx context.Context, t *testing.T, member int, data []byte) error {
	s := h.store()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.minTS--
	s.add(data, s.minTS)
	return nil
}

func isBase64URL(b []byte) bool {
	for _, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
