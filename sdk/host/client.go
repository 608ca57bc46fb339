package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/internal/wire"
)

// ErrClosed is returned by calls on a channel after Close: it is
// sdk.ErrClosed, so errors.Is works the same in-process and across the
// process boundary.
var ErrClosed = sdk.ErrClosed

// deadlineSkew is how early a DeadlineExceeded from the adapter may arrive
// and still be the caller's own deadline.
const deadlineSkew = 100 * time.Millisecond

// closeTimeout bounds Channel.Close, which has no context.
const closeTimeout = 5 * time.Second

// Client is a running adapter seen as an sdk.Adapter. It is safe for
// concurrent use.
type Client struct {
	name  string
	rpc   wire.AdapterClient
	info  sdk.Info
	pid   int
	done  <-chan struct{}
	close func() error
	once  sync.Once
	err   error

	// Set by Launch for a subprocess (limit.go).
	limit     int64
	dataLimit int64 // RLIMIT_DATA as set (0: none)
	health    grpc_health_v1.HealthClient
	kill      func()
	stderr    *tail

	unknownMu    sync.Mutex
	unknownCode  int32
	unknownCount int64

	kinds map[string]*Client // a process serving several adapters (Config.Kinds)
}

var _ sdk.Adapter = (*Client)(nil)

// newClient reads Info over conn and returns the client.
func newClient(ctx context.Context, name string, conn grpc.ClientConnInterface, done <-chan struct{}, pid int, closeFn func() error) (*Client, error) {
	c := &Client{name: name, rpc: wire.NewAdapterClient(conn), done: done, pid: pid, close: closeFn}
	resp, err := c.rpc.Info(ctx, &wire.InfoRequest{})
	if err != nil {
		return nil, fmt.Errorf("host: adapter %s: info: %w", name, c.callError(ctx, err))
	}
	c.info = sdk.Info{
		Name:     resp.GetName(),
		Version:  resp.GetVersion(),
		Summary:  resp.GetSummary(),
		Defaults: capsFromWire(resp.GetDefaults()),
	}
	return c, nil
}

// Kind returns the client of adapter kind in a process launched with
// Config.Kinds, nil if it serves no such kind. It shares the process: its
// Close stops them all.
func (c *Client) Kind(kind string) *Client { return c.kinds[kind] }

// Info returns the adapter's Info, read once at start.
func (c *Client) Info() sdk.Info { return c.info }

// Pid is the adapter process ID (0 when served in this process).
func (c *Client) Pid() int { return c.pid }

// Done is closed when the adapter process has exited or the client closed.
func (c *Client) Done() <-chan struct{} { return c.done }

// Close stops the adapter: SIGTERM, then after a grace period the go-plugin
// shutdown and a kill. Open channels die with it.
func (c *Client) Close() error {
	c.once.Do(func() { c.err = c.close() })
	return c.err
}

// Configure opens a channel in the adapter process. req.Logger is not
// used: the adapter logs through its stderr, which reaches the host's
// logger with adapter=NAME and channel=ID.
func (c *Client) Configure(ctx context.Context, req sdk.ConfigureRequest) (sdk.Channel, error) {
	if c.rpc == nil {
		return nil, fmt.Errorf("host: %s serves several adapters; configure a channel on one of them (Kind)", c.name)
	}
	resp, err := c.rpc.Configure(ctx, &wire.ConfigureRequest{
		ChannelId:  req.ChannelID,
		ConfigJson: req.Config,
		Secrets:    req.Secrets,
		StateDir:   req.StateDir,
	})
	if err != nil {
		return nil, c.callError(ctx, err)
	}
	return &channel{
		c:        c,
		id:       req.ChannelID,
		handle:   resp.GetHandle(),
		caps:     capsFromWire(resp.GetCapabilities()),
		features: resp.GetFeatures(),
	}, nil
}

// channel is a remote channel, named by its handle in the adapter process.
type channel struct {
	c        *Client
	id       string
	handle   uint64
	caps     sdk.Capabilities
	features *wire.Features

	mu     sync.Mutex
	closed bool
}

var (
	_ sdk.Channel  = (*channel)(nil)
	_ sdk.Board    = (*channel)(nil)
	_ sdk.Deleter  = (*channel)(nil)
	_ sdk.Healther = (*channel)(nil)
)

func (ch *channel) Capabilities() sdk.Capabilities { return ch.caps }

func (ch *channel) check() error {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.closed {
		return fmt.Errorf("host: channel %s: %w", ch.id, ErrClosed)
	}
	return nil
}

func (ch *channel) Publish(ctx context.Context, req sdk.PublishRequest) (sdk.PublishResponse, error) {
	if err := ch.check(); err != nil {
		return sdk.PublishResponse{}, err
	}
	items := make([]*wire.PublishItem, len(req.Items))
	for i, it := range req.Items {
		items[i] = &wire.PublishItem{Data: it.Data, IdempotencyKey: it.IdempotencyKey, To: it.To}
	}
	resp, err := ch.c.rpc.Publish(ctx, &wire.PublishRequest{Handle: ch.handle, Items: items})
	if err != nil {
		return sdk.PublishResponse{}, ch.c.callError(ctx, err)
	}
	if len(resp.GetResults()) != len(req.Items) {
		return sdk.PublishResponse{}, &sdk.Error{Code: sdk.CodeUnknown,
			Message: fmt.Sprintf("adapter %s returned %d results for %d items", ch.c.name, len(resp.GetResults()), len(req.Items))}
	}
	out := sdk.PublishResponse{Results: make([]sdk.PublishResult, len(resp.GetResults()))}
	for i, r := range resp.GetResults() {
		if e := r.GetError(); e != nil {
			out.Results[i].Err = ch.c.errorFromWire(e)
		} else {
			out.Results[i].ID = r.GetId()
		}
	}
	return out, nil
}

func (ch *channel) Subscribe(ctx context.Context, req sdk.SubscribeRequest, sink sdk.Sink) error {
	if err := ch.check(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := ch.c.rpc.Subscribe(ctx, &wire.SubscribeRequest{Handle: ch.handle, Cursor: req.Cursor})
	if err != nil {
		return ch.c.callError(ctx, err)
	}
	for {
		d, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return ctx.Err()
		}
		if err != nil {
			return ch.c.callError(ctx, err)
		}
		var t time.Time
		if n := d.GetTimeUnixNano(); n != 0 {
			t = time.Unix(0, n)
		}
		if err := sink.Deliver(ctx, sdk.Delivery{
			ID:     d.GetId(),
			Data:   d.GetData(),
			Cursor: d.GetCursor(),
			From:   d.GetFrom(),
			Time:   t,
			Skip:   d.GetSkip() || len(d.GetData()) == 0, // protocol 1 before skip: empty data
		}); err != nil {
			return err
		}
	}
}

func (ch *channel) unsupported(what string) error {
	return sdk.Errorf(sdk.CodeUnsupported, "channel %s (adapter %s) %s", ch.id, ch.c.name, what)
}

func (ch *channel) Put(ctx context.Context, req sdk.PutRequest) error {
	if err := ch.check(); err != nil {
		return err
	}
	if !ch.features.GetBoard() {
		return ch.unsupported("has no board")
	}
	_, err := ch.c.rpc.BoardPut(ctx, &wire.BoardPutRequest{Handle: ch.handle, Key: req.Key, Value: req.Value})
	if err != nil {
		return ch.c.callError(ctx, err)
	}
	return nil
}

func (ch *channel) Get(ctx context.Context, req sdk.GetRequest) (sdk.GetResponse, error) {
	if err := ch.check(); err != nil {
		return sdk.GetResponse{}, err
	}
	if !ch.features.GetBoard() {
		return sdk.GetResponse{}, ch.unsupported("has no board")
	}
	resp, err := ch.c.rpc.BoardGet(ctx, &wire.BoardGetRequest{Handle: ch.handle, Keys: req.Keys})
	if err != nil {
		return sdk.GetResponse{}, ch.c.callError(ctx, err)
	}
	out := sdk.GetResponse{Entries: make([]sdk.BoardEntry, len(resp.GetEntries()))}
	for i, e := range resp.GetEntries() {
		var t time.Time
		if n := e.GetTimeUnixNano(); n != 0 {
			t = time.Unix(0, n)
		}
		out.Entries[i] = sdk.BoardEntry{Key: e.GetKey(), Value: e.GetValue(), Time: t}
	}
	return out, nil
}

func (ch *channel) Delete(ctx context.Context, req sdk.DeleteRequest) (sdk.DeleteResponse, error) {
	if err := ch.check(); err != nil {
		return sdk.DeleteResponse{}, err
	}
	if !ch.features.GetDelete() {
		return sdk.DeleteResponse{}, ch.unsupported("cannot delete")
	}
	resp, err := ch.c.rpc.Delete(ctx, &wire.DeleteRequest{Handle: ch.handle, Ids: req.IDs})
	if err != nil {
		return sdk.DeleteResponse{}, ch.c.callError(ctx, err)
	}
	if len(resp.GetResults()) != len(req.IDs) {
		return sdk.DeleteResponse{}, &sdk.Error{Code: sdk.CodeUnknown,
			Message: fmt.Sprintf("adapter %s returned %d delete results for %d IDs", ch.c.name, len(resp.GetResults()), len(req.IDs))}
	}
	out := sdk.DeleteResponse{Errors: make([]error, len(req.IDs))}
	for i, r := range resp.GetResults() {
		if e := r.GetError(); e != nil {
			out.Errors[i] = ch.c.errorFromWire(e)
			out.Fail(req.IDs[i], out.Errors[i])
		}
	}
	return out, nil
}

// ReportsHealth reports whether the adapter implements Health for this
// channel (its Features); Health without it always says ok.
func (ch *channel) ReportsHealth() bool { return ch.features.GetHealth() }

// Health reports the remote channel's health. A channel without Healther
// reports HealthOK with a note; a call that fails reports HealthDown with
// the reason, since Health has no error result.
func (ch *channel) Health(ctx context.Context) sdk.Health {
	if err := ch.check(); err != nil {
		return sdk.Health{State: sdk.HealthDown, Message: err.Error()}
	}
	if !ch.features.GetHealth() {
		return sdk.Health{State: sdk.HealthOK, Message: "adapter " + ch.c.name + " reports no channel health"}
	}
	resp, err := ch.c.rpc.Health(ctx, &wire.HealthRequest{Handle: ch.handle})
	if err != nil {
		return sdk.Health{State: sdk.HealthDown, Message: ch.c.callError(ctx, err).Error()}
	}
	return sdk.Health{State: sdk.HealthState(resp.GetState()), Message: resp.GetMessage(), Counters: resp.GetCounters()}
}

// Close releases the channel in the adapter process. Closing twice, or
// after the process is gone, is not an error.
func (ch *channel) Close() error {
	ch.mu.Lock()
	if ch.closed {
		ch.mu.Unlock()
		return nil
	}
	ch.closed = true
	ch.mu.Unlock()
	select {
	case <-ch.c.done:
		return nil
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	if _, err := ch.c.rpc.CloseChannel(ctx, &wire.CloseChannelRequest{Handle: ch.handle}); err != nil {
		err = ch.c.callError(ctx, err)
		if errors.Is(err, sdk.ErrUnavailable) {
			return nil // the process is gone and took the channel with it
		}
		return fmt.Errorf("host: close channel %s: %w", ch.id, err)
	}
	return nil
}

// callError converts a failed call to the error the sdk contract promises:
// the adapter's *sdk.Error as sent; ctx.Err() when the caller's context
// ended; sdk.CodeUnavailable when the connection or process is gone.
func (c *Client) callError(ctx context.Context, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &sdk.Error{Code: sdk.CodeUnknown, Message: fmt.Sprintf("adapter %s: %v", c.name, err), Err: err}
	}
	for _, d := range st.Details() {
		if we, ok := d.(*wire.Error); ok {
			return c.errorFromWire(we)
		}
	}
	switch st.Code() {
	case codes.Canceled, codes.DeadlineExceeded:
		// The server's timer for the caller's deadline may fire a moment
		// before the caller's own context notices it.
		if dl, ok := ctx.Deadline(); ok && st.Code() == codes.DeadlineExceeded && time.Until(dl) < deadlineSkew {
			<-ctx.Done()
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &sdk.Error{Code: sdk.CodeUnavailable, Message: fmt.Sprintf("adapter %s: connection closed: %s", c.name, st.Message()), Err: err}
	case codes.Unavailable:
		return &sdk.Error{Code: sdk.CodeUnavailable, Message: fmt.Sprintf("adapter %s unreachable: %s", c.name, st.Message()), Err: err}
	case codes.ResourceExhausted:
		return &sdk.Error{Code: sdk.CodeTooLarge, Message: fmt.Sprintf("adapter %s: message over the %d MiB wire limit, send smaller batches: %s", c.name, wire.MaxMessageSize>>20, st.Message()), Err: err}
	}
	return &sdk.Error{Code: sdk.CodeUnknown, Message: fmt.Sprintf("adapter %s: %s: %s", c.name, st.Code(), st.Message()), Err: err}
}

// errorFromWire turns a wire Error into an *sdk.Error. A code this host
// does not know becomes CodeUnknown, with the number in the message and
// counted in UnknownCodes, so `remora doctor` can name the adapter.
func (c *Client) errorFromWire(e *wire.Error) *sdk.Error {
	out := &sdk.Error{
		Code:       sdk.Code(e.GetCode()),
		Message:    e.GetMessage(),
		RetryAfter: max(0, time.Duration(e.GetRetryAfterMs())*time.Millisecond),
	}
	if !out.Code.Known() {
		c.noteUnknownCode(e.GetCode())
		out.Message = fmt.Sprintf("adapter %s answered with error code %d, which this remora does not know (protocol %d knows 0 to %d): %s",
			c.name, e.GetCode(), sdk.ProtocolVersion, sdk.MaxCode, e.GetMessage())
		out.Code = sdk.CodeUnknown
	}
	return out
}

// UnknownCode reports the last error code the adapter sent that this host
// does not know, and how many such answers there were.
func (c *Client) UnknownCode() (code int32, count int64) {
	c.unknownMu.Lock()
	defer c.unknownMu.Unlock()
	return c.unknownCode, c.unknownCount
}

func (c *Client) noteUnknownCode(code int32) {
	c.unknownMu.Lock()
	defer c.unknownMu.Unlock()
	c.unknownCode = code
	c.unknownCount++
}

func dur(ms int64) sdk.Duration { return sdk.Duration(time.Duration(ms) * time.Millisecond) }

func capsFromWire(c *wire.Capabilities) sdk.Capabilities {
	return sdk.Capabilities{
		MaxPayload:   int(c.GetMaxPayload()),
		Counting:     sdk.Counting(c.GetCounting()),
		Text:         c.GetText(),
		MaxBatch:     int(c.GetMaxBatch()),
		Board:        c.GetBoard(),
		Push:         c.GetPush(),
		PollInterval: dur(c.GetPollIntervalMs()),
		Latency:      dur(c.GetLatencyMs()),
		Retention:    dur(c.GetRetentionMs()),
		Addressed:    c.GetAddressed(),
		Delete:       sdk.DeleteScope(c.GetDelete()),
		Idempotency: sdk.Idempotency{
			Level:  sdk.IdempotencyLevel(c.GetIdempotencyLevel()),
			Window: dur(c.GetIdempotencyWindowMs()),
		},
		RateLimit: sdk.RateLimit{
			Requests: int(c.GetRateLimitRequests()),
			Per:      dur(c.GetRateLimitPerMs()),
		},
	}
}
