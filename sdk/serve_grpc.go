package sdk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/remora-p2p/remora/sdk/internal/wire"
)

// grpcPlugin is the adapter side of the go-plugin plugin; sdk/host holds the
// client side.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	srvs map[string]*grpcServer // by kind; "" alone for one adapter
}

func (p *grpcPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	for kind, srv := range p.srvs {
		wire.RegisterKind(s, kind, srv)
	}
	return nil
}

func (p *grpcPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, errors.New("sdk: the adapter side has no client")
}

// grpcServer is the server half of the wire: it serves one Adapter and the
// channels opened on it, each named by a handle.
type grpcServer struct {
	wire.UnimplementedAdapterServer
	impl   Adapter
	logger *slog.Logger

	// streams is the parent of every Subscribe; the server's owner cancels
	// it so that a graceful stop does not wait for them.
	streams context.Context

	mu       sync.Mutex
	next     uint64
	channels map[uint64]*servedChannel
}

type servedChannel struct {
	id string
	ch Channel
}

func newGRPCServer(a Adapter, logger *slog.Logger, streams context.Context) *grpcServer {
	return &grpcServer{
		impl:     a,
		logger:   logger,
		streams:  streams,
		channels: make(map[uint64]*servedChannel),
	}
}

// closeAll closes every open channel; Serve calls it on the way out, after
// it cancelled streams.
func (s *grpcServer) closeAll() {
	s.mu.Lock()
	chs := s.channels
	s.channels = make(map[uint64]*servedChannel)
	s.mu.Unlock()
	for _, c := range chs {
		if err := c.ch.Close(); err != nil {
			s.logger.Warn("close channel", "channel", c.id, "error", err)
		}
	}
}

func (s *grpcServer) channel(h uint64) (*servedChannel, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.channels[h]
	if !ok {
		return nil, statusOf(Errorf(CodeNotFound, "no open channel with handle %d (closed, or the adapter restarted)", h))
	}
	return c, nil
}

func (s *grpcServer) Info(context.Context, *wire.InfoRequest) (*wire.InfoResponse, error) {
	info := s.impl.Info()
	return &wire.InfoResponse{
		Name:     info.Name,
		Version:  info.Version,
		Summary:  info.Summary,
		Defaults: capsToWire(info.Defaults),
	}, nil
}

func (s *grpcServer) Configure(ctx context.Context, req *wire.ConfigureRequest) (*wire.ConfigureResponse, error) {
	ch, err := s.impl.Configure(ctx, ConfigureRequest{
		ChannelID: req.GetChannelId(),
		Config:    req.GetConfigJson(),
		Secrets:   req.GetSecrets(),
		StateDir:  req.GetStateDir(),
		Logger:    s.logger.With("channel", req.GetChannelId()),
	})
	if err != nil {
		return nil, statusOf(err)
	}
	caps := ch.Capabilities()
	if err := caps.Validate(); err != nil {
		_ = ch.Close()
		return nil, statusOf(fmt.Errorf("adapter %s returned invalid %w", s.impl.Info().Name, err))
	}
	_, board := ch.(Board)
	_, del := ch.(Deleter)
	_, health := ch.(Healther)

	s.mu.Lock()
	s.next++
	h := s.next
	s.channels[h] = &servedChannel{id: req.GetChannelId(), ch: ch}
	s.mu.Unlock()
	return &wire.ConfigureResponse{
		Handle:       h,
		Capabilities: capsToWire(caps),
		Features:     &wire.Features{Board: board, Delete: del, Health: health},
	}, nil
}

func (s *grpcServer) Publish(ctx context.Context, req *wire.PublishRequest) (*wire.PublishResponse, error) {
	c, err := s.channel(req.GetHandle())
	if err != nil {
		return nil, err
	}
	items := make([]PublishItem, len(req.GetItems()))
	for i, it := range req.GetItems() {
		items[i] = PublishItem{Data: it.GetData(), IdempotencyKey: it.GetIdempotencyKey(), To: it.GetTo()}
	}
	resp, err := c.ch.Publish(ctx, PublishRequest{Items: items})
	if err != nil {
		return nil, statusOf(err)
	}
	if len(resp.Results) != len(items) {
		return nil, statusOf(fmt.Errorf("adapter %s returned %d results for %d items", s.impl.Info().Name, len(resp.Results), len(items)))
	}
	out := &wire.PublishResponse{Results: make([]*wire.PublishResult, len(resp.Results))}
	for i, r := range resp.Results {
		if r.Err != nil {
			out.Results[i] = &wire.PublishResult{Result: &wire.PublishResult_Error{Error: errorToWire(r.Err)}}
		} else {
			out.Results[i] = &wire.PublishResult{Result: &wire.PublishResult_Id{Id: r.ID}}
		}
	}
	return out, nil
}

func (s *grpcServer) Subscribe(req *wire.SubscribeRequest, stream wire.Adapter_SubscribeServer) error {
	c, err := s.channel(req.GetHandle())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	defer context.AfterFunc(s.streams, cancel)()
	sink := SinkFunc(func(ctx context.Context, d Delivery) error {
		var t int64
		if !d.Time.IsZero() {
			t = d.Time.UnixNano()
		}
		return stream.Send(&wire.Delivery{Id: d.ID, Data: d.Data, Cursor: d.Cursor, From: d.From, TimeUnixNano: t, Skip: d.Skip})
	})
	err = c.ch.Subscribe(ctx, SubscribeRequest{Cursor: req.GetCursor()}, sink)
	if err == nil {
		return nil
	}
	return statusOf(err)
}

// board returns the Board of the channel with handle h.
func (s *grpcServer) board(h uint64) (Board, error) {
	c, err := s.channel(h)
	if err != nil {
		return nil, err
	}
	b, ok := c.ch.(Board)
	if !ok {
		return nil, statusOf(Errorf(CodeUnsupported, "channel %s has no board", c.id))
	}
	return b, nil
}

func (s *grpcServer) BoardPut(ctx context.Context, req *wire.BoardPutRequest) (*wire.BoardPutResponse, error) {
	b, err := s.board(req.GetHandle())
	if err != nil {
		return nil, err
	}
	if err := b.Put(ctx, PutRequest{Key: req.GetKey(), Value: req.GetValue()}); err != nil {
		return nil, statusOf(err)
	}
	return &wire.BoardPutResponse{}, nil
}

func (s *grpcServer) BoardGet(ctx context.Context, req *wire.BoardGetRequest) (*wire.BoardGetResponse, error) {
	b, err := s.board(req.GetHandle())
	if err != nil {
		return nil, err
	}
	resp, err := b.Get(ctx, GetRequest{Keys: req.GetKeys()})
	if err != nil {
		return nil, statusOf(err)
	}
	out := &wire.BoardGetResponse{Entries: make([]*wire.BoardEntry, len(resp.Entries))}
	for i, e := range resp.Entries {
		var t int64
		if !e.Time.IsZero() {
			t = e.Time.UnixNano()
		}
		out.Entries[i] = &wire.BoardEntry{Key: e.Key, Value: e.Value, TimeUnixNano: t}
	}
	return out, nil
}

func (s *grpcServer) Delete(ctx context.Context, req *wire.DeleteRequest) (*wire.DeleteResponse, error) {
	c, err := s.channel(req.GetHandle())
	if err != nil {
		return nil, err
	}
	d, ok := c.ch.(Deleter)
	if !ok {
		return nil, statusOf(Errorf(CodeUnsupported, "channel %s cannot delete", c.id))
	}
	ids := req.GetIds()
	resp, err := d.Delete(ctx, DeleteRequest{IDs: ids})
	if err != nil {
		return nil, statusOf(err)
	}
	if resp.Errors != nil && len(resp.Errors) != len(ids) {
		return nil, statusOf(fmt.Errorf("adapter %s returned %d delete results for %d IDs", s.impl.Info().Name, len(resp.Errors), len(ids)))
	}
	out := &wire.DeleteResponse{Results: make([]*wire.DeleteResult, len(ids))}
	for i, id := range ids {
		out.Results[i] = &wire.DeleteResult{}
		e := resp.Failed[id]
		if e == nil && resp.Errors != nil {
			e = resp.Errors[i]
		}
		if e != nil {
			out.Results[i].Error = errorToWire(e)
		}
	}
	return out, nil
}

func (s *grpcServer) Health(ctx context.Context, req *wire.HealthRequest) (*wire.HealthResponse, error) {
	c, err := s.channel(req.GetHandle())
	if err != nil {
		return nil, err
	}
	h, ok := c.ch.(Healther)
	if !ok {
		return nil, statusOf(Errorf(CodeUnsupported, "channel %s reports no health", c.id))
	}
	r := h.Health(ctx)
	return &wire.HealthResponse{State: string(r.State), Message: r.Message, Counters: r.Counters}, nil
}

func (s *grpcServer) CloseChannel(_ context.Context, req *wire.CloseChannelRequest) (*wire.CloseChannelResponse, error) {
	s.mu.Lock()
	c, ok := s.channels[req.GetHandle()]
	delete(s.channels, req.GetHandle())
	s.mu.Unlock()
	if !ok {
		return &wire.CloseChannelResponse{}, nil // closing twice is not an error
	}
	if err := c.ch.Close(); err != nil {
		return nil, statusOf(err)
	}
	return &wire.CloseChannelResponse{}, nil
}

// errorToWire converts an error to the wire Error: its Code, message and
// retry-after when it is (or wraps) an *Error, CodeUnknown otherwise.
func errorToWire(err error) *wire.Error {
	var e *Error
	if !errors.As(err, &e) {
		return &wire.Error{Code: int32(CodeUnknown), Message: err.Error()}
	}
	msg := e.Message
	switch {
	case err != error(e):
		msg = err.Error() // keep the wrapping context
	case msg == "" && e.Err != nil:
		msg = e.Err.Error()
	}
	return &wire.Error{Code: int32(e.Code), Message: msg, RetryAfterMs: e.RetryAfter.Milliseconds()}
}

// grpcCodes is the gRPC status code a call-level error travels with. The
// Error detail is authoritative; the status code serves generic gRPC tools.
var grpcCodes = map[Code]codes.Code{
	CodeUnknown:         codes.Unknown,
	CodeUnsupported:     codes.Unimplemented,
	CodeAuthFailed:      codes.Unauthenticated,
	CodeNeedsUserAction: codes.FailedPrecondition,
	CodeNotFound:        codes.NotFound,
	CodeRateLimited:     codes.ResourceExhausted,
	CodeTooLarge:        codes.InvalidArgument,
	CodeCursorInvalid:   codes.OutOfRange,
	CodeUnavailable:     codes.Unavailable,
	CodeBadConfig:       codes.InvalidArgument,
	CodeInvalidArgument: codes.InvalidArgument,
}

// statusOf converts a call-level error to a gRPC status carrying the wire
// Error as its detail. Context errors become Canceled/DeadlineExceeded.
func statusOf(err error) error {
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	we := errorToWire(err)
	code, ok := grpcCodes[Code(we.Code)]
	if !ok {
		code = codes.Unknown
	}
	st, derr := status.New(code, we.GetMessage()).WithDetails(we)
	if derr != nil {
		return status.Error(code, we.GetMessage())
	}
	return st.Err()
}

func ms(d Duration) int64 { return time.Duration(d).Milliseconds() }

func capsToWire(c Capabilities) *wire.Capabilities {
	return &wire.Capabilities{
		MaxPayload:          int64(c.MaxPayload),
		Counting:            string(c.Counting),
		Text:                c.Text,
		MaxBatch:            int64(c.MaxBatch),
		Board:               c.Board,
		Push:                c.Push,
		PollIntervalMs:      ms(c.PollInterval),
		LatencyMs:           ms(c.Latency),
		RetentionMs:         ms(c.Retention),
		Addressed:           c.Addressed,
		Delete:              string(c.Delete),
		IdempotencyLevel:    string(c.Idempotency.Level),
		IdempotencyWindowMs: ms(c.Idempotency.Window),
		RateLimitRequests:   int64(c.RateLimit.Requests),
		RateLimitPerMs:      ms(c.RateLimit.Per),
	}
}
