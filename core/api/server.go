package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"
)

// maxWait bounds a long poll.
const maxWait = 5 * time.Minute

// Listen opens the API socket at path with mode 0600, replacing a stale
// socket left by a crashed daemon but refusing to steal a live one.
func Listen(path string) (net.Listener, error) {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("api: listen %s: another daemon is running (stop it first)", path)
	}
	_ = os.Remove(path)
	old := umask(0o177)
	ln, err := net.Listen("unix", path)
	umask(old)
	if err != nil {
		return nil, fmt.Errorf("api: listen %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("api: chmod %s: %w", path, err)
	}
	return ln, nil
}

// Handler serves the API for b.
func Handler(b Backend, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	s := &server{b: b, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", s.status)
	mux.HandleFunc("POST /v1/send", s.send)
	mux.HandleFunc("GET /v1/messages", s.messages)
	mux.HandleFunc("GET /v1/messages/stream", s.stream)
	mux.HandleFunc("POST /v1/messages/ack", s.ack)
	mux.HandleFunc("GET /v1/peers", s.peers)
	mux.HandleFunc("GET /v1/channels", s.channels)
	mux.HandleFunc("GET /v1/boxes", s.boxes)
	mux.HandleFunc("GET /v1/relays/dials", s.relayDials)
	mux.HandleFunc("GET /v1/events", s.events)
	mux.HandleFunc("POST /v1/circles", s.createCircle)
	mux.HandleFunc("POST /v1/invites", s.invite)
	mux.HandleFunc("POST /v1/join", s.join)
	mux.HandleFunc("GET /v1/joins/{id}", s.joinStatus)
	mux.HandleFunc("GET /v1/pending", s.pending)
	mux.HandleFunc("POST /v1/pending/approve", s.approve)
	mux.HandleFunc("POST /v1/pending/deny", s.deny)
	mux.HandleFunc("GET /v1/members", s.members)
	mux.HandleFunc("POST /v1/members/remove", s.removeMember)
	mux.HandleFunc("POST /v1/members/role", s.setRole)
	mux.HandleFunc("POST /v1/circles/leave", s.leave)
	return mux
}

// idleTimeout closes a keep-alive connection no request came on for that
// long. Without it every client an app creates and drops leaves a
// connection, its buffers and a goroutine in the daemon for good (a test
// harness polling with fresh clients left 1,250 of them, 20 MB).
var idleTimeout = 30 * time.Second

// Serve serves the API on ln until ctx ends.
func Serve(ctx context.Context, ln net.Listener, b Backend, log *slog.Logger) error {
	srv := &http.Server{Handler: Handler(b, log), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: idleTimeout}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("api: serve: %w", err)
	}
	return nil
}

type server struct {
	b   Backend
	log *slog.Logger
}

func (s *server) fail(w http.ResponseWriter, err error) {
	var ae *Error
	if !errors.As(err, &ae) {
		ae = &Error{Status: http.StatusInternalServerError, Message: err.Error()}
	}
	if ae.Status == 0 {
		ae.Status = http.StatusBadRequest
	}
	if ae.Status >= 500 {
		s.log.Warn("api request failed", "err", err)
	}
	writeJSON(w, ae.Status, ae)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// decode reads a JSON body of at most 1 MiB into v.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &Error{Status: http.StatusBadRequest, Message: "bad request body: " + err.Error(), Advice: "send a JSON object; see docs/api.md"}
	}
	return nil
}

func query(r *http.Request) (after int64, wait time.Duration, err error) {
	after = -1
	if v := r.URL.Query().Get("after"); v != "" {
		if after, err = strconv.ParseInt(v, 10, 64); err != nil {
			return 0, 0, &Error{Status: http.StatusBadRequest, Message: "after: not an integer", Advice: "pass the seq of the last entry you handled"}
		}
	}
	if v := r.URL.Query().Get("wait"); v != "" {
		if wait, err = time.ParseDuration(v); err != nil || wait < 0 {
			return 0, 0, &Error{Status: http.StatusBadRequest, Message: "wait: not a duration", Advice: "e.g. wait=30s"}
		}
	}
	return after, min(wait, maxWait), nil
}

func (s *server) status(w http.ResponseWriter, r *http.Request) {
	st, err := s.b.Status(r.Context())
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *server) send(w http.ResponseWriter, r *http.Request) {
	var req SendRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, err)
		return
	}
	res, err := s.b.Send(r.Context(), req)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *server) messages(w http.ResponseWriter, r *http.Request) {
	after, wait, err := query(r)
	if err != nil {
		s.fail(w, err)
		return
	}
	msgs, err := s.b.Messages(r.Context(), after, 500)
	if err == nil && len(msgs) == 0 && wait > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		werr := s.b.WaitMessages(ctx, after)
		cancel()
		if werr == nil || errors.Is(werr, context.DeadlineExceeded) {
			msgs, err = s.b.Messages(r.Context(), after, 500)
		}
	}
	if err != nil {
		s.fail(w, err)
		return
	}
	if msgs == nil {
		msgs = []Message{}
	}
	writeJSON(w, http.StatusOK, msgs)
}

func (s *server) stream(w http.ResponseWriter, r *http.Request) {
	after, _, err := query(r)
	if err != nil {
		s.fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	for r.Context().Err() == nil {
		msgs, err := s.b.Messages(r.Context(), after, 500)
		if err != nil {
			return
		}
		for _, m := range msgs {
			if enc.Encode(m) != nil {
				return
			}
			after = m.Seq
		}
		if flusher != nil {
			flusher.Flush()
		}
		if len(msgs) == 0 {
			if err := s.b.WaitMessages(r.Context(), after); err != nil {
				return
			}
		}
	}
}

func (s *server) ack(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Seq int64 `json:"seq"`
	}
	if err := decode(r, &req); err != nil {
		s.fail(w, err)
		return
	}
	if err := s.b.Ack(r.Context(), req.Seq); err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int64{"acked": req.Seq})
}

func (s *server) peers(w http.ResponseWriter, r *http.Request) {
	p, err := s.b.Peers(r.Context())
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, orEmpty(p))
}

func (s *server) channels(w http.ResponseWriter, r *http.Request) {
	c, err := s.b.Channels(r.Context())
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, orEmpty(c))
}

func (s *server) events(w http.ResponseWriter, r *http.Request) {
	after, wait, err := query(r)
	if err != nil {
		s.fail(w, err)
		return
	}
	after = max(after, 0)
	ev, err := s.b.Events(r.Context(), after)
	if err == nil && len(ev) == 0 && wait > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		werr := s.b.WaitEvents(ctx, after)
		cancel()
		if werr == nil || errors.Is(werr, context.DeadlineExceeded) {
			ev, err = s.b.Events(r.Context(), after)
		}
	}
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, orEmpty(ev))
}

func (s *server) createCircle(w http.ResponseWriter, r *http.Request) {
	var req CreateCircleRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, err)
		return
	}
	c, err := s.b.CreateCircle(r.Context(), req)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (s *server) invite(w http.ResponseWriter, r *http.Request) {
	var req InviteRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, err)
		return
	}
	res, err := s.b.Invite(r.Context(), req)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *server) join(w http.ResponseWriter, r *http.Request) {
	var req JoinRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, err)
		return
	}
	c, err := s.b.Join(r.Context(), req)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (s *server) joinStatus(w http.ResponseWriter, r *http.Request) {
	_, wait, err := query(r)
	if err != nil {
		s.fail(w, err)
		return
	}
	st, err := s.b.JoinStatus(r.Context(), r.PathValue("id"), wait)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *server) pending(w http.ResponseWriter, r *http.Request) {
	p, err := s.b.Pending(r.Context(), r.URL.Query().Get("circle"))
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, orEmpty(p))
}

func (s *server) members(w http.ResponseWriter, r *http.Request) {
	m, err := s.b.Members(r.Context(), r.URL.Query().Get("circle"))
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, orEmpty(m))
}

// memberCall decodes a MemberRequest, calls fn and writes its result.
func (s *server) memberCall(fn func(context.Context, MemberRequest) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req MemberRequest
		if err := decode(r, &req); err != nil {
			s.fail(w, err)
			return
		}
		res, err := fn(r.Context(), req)
		if err != nil {
			s.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	}
}

func (s *server) approve(w http.ResponseWriter, r *http.Request) {
	s.memberCall(func(ctx context.Context, req MemberRequest) (any, error) { return s.b.Approve(ctx, req) })(w, r)
}

func (s *server) deny(w http.ResponseWriter, r *http.Request) {
	s.memberCall(func(ctx context.Context, req MemberRequest) (any, error) { return req, s.b.Deny(ctx, req) })(w, r)
}

func (s *server) removeMember(w http.ResponseWriter, r *http.Request) {
	s.memberCall(func(ctx context.Context, req MemberRequest) (any, error) { return req, s.b.RemoveMember(ctx, req) })(w, r)
}

func (s *server) setRole(w http.ResponseWriter, r *http.Request) {
	s.memberCall(func(ctx context.Context, req MemberRequest) (any, error) { return s.b.SetRole(ctx, req) })(w, r)
}

func (s *server) leave(w http.ResponseWriter, r *http.Request) {
	s.memberCall(func(ctx context.Context, req MemberRequest) (any, error) { return req, s.b.Leave(ctx, req) })(w, r)
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
