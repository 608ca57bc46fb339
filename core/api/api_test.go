package api

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// memBackend is an in-memory Backend: the API layer's tests need only its
// contract (an inbox with sequence numbers and an acked cursor).
type memBackend struct {
	mu     sync.Mutex
	inbox  []Message
	acked  int64
	notify chan struct{}
}

func newMem() *memBackend { return &memBackend{notify: make(chan struct{})} }

func (m *memBackend) add(text string) {
	m.mu.Lock()
	m.inbox = append(m.inbox, Message{Seq: int64(len(m.inbox) + 1), Text: text})
	close(m.notify)
	m.notify = make(chan struct{})
	m.mu.Unlock()
}

func (m *memBackend) Status(context.Context) (Status, error) {
	return Status{PeerID: "12D3KooWtest", Ready: true}, nil
}
func (m *memBackend) Send(_ context.Context, r SendRequest) (SendResult, error) {
	if r.Circle == "" {
		return SendResult{}, &Error{Status: 400, Message: "circle: required", Advice: "pass a circle ID from `remora status`"}
	}
	m.add(r.Text)
	return SendResult{ID: "m1", Accepted: time.Now()}, nil
}
func (m *memBackend) Messages(_ context.Context, after int64, limit int) ([]Message, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if after < 0 {
		after = m.acked
	}
	var out []Message
	for _, msg := range m.inbox {
		if msg.Seq > after && len(out) < limit {
			out = append(out, msg)
		}
	}
	return out, nil
}
func (m *memBackend) WaitMessages(ctx context.Context, after int64) error {
	for {
		m.mu.Lock()
		n, ch := int64(len(m.inbox)), m.notify
		if after < 0 {
			after = m.acked
		}
		m.mu.Unlock()
		if n > after {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}
func (m *memBackend) Ack(_ context.Context, seq int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.acked = max(m.acked, seq)
	return nil
}
func (m *memBackend) Peers(context.Context) ([]Peer, error)       { return nil, nil }
func (m *memBackend) Channels(context.Context) ([]Channel, error) { return nil, nil }
func (m *memBackend) Boxes(context.Context) ([]Box, error)        { return nil, nil }
func (m *memBackend) RelayDials(context.Context) ([]RelayDial, error) {
	return nil, nil
}
func (m *memBackend) Events(context.Context, int64) ([]Event, error) {
	return nil, nil
}
func (m *memBackend) WaitEvents(ctx context.Context, _ int64) error { <-ctx.Done(); return ctx.Err() }
func (m *memBackend) CreateCircle(_ context.Context, r CreateCircleRequest) (Circle, error) {
	return Circle{ID: "c1", Name: r.Name}, nil
}
func (m *memBackend) Invite(context.Context, InviteRequest) (InviteResult, error) {
	return InviteResult{}, errors.New("not in this test")
}
func (m *memBackend) Join(context.Context, JoinRequest) (JoinStatus, error) {
	return JoinStatus{}, &Error{Status: 400, Message: "invite expired", Advice: "ask for a new invite"}
}
func (m *memBackend) JoinStatus(_ context.Context, id string, _ time.Duration) (JoinStatus, error) {
	return JoinStatus{ID: id, State: "pending", SafetyCode: "123 456 789 012"}, nil
}
func (m *memBackend) Pending(context.Context, string) ([]PendingJoin, error) { return nil, nil }
func (m *memBackend) Approve(_ context.Context, r MemberRequest) (Member, error) {
	if r.Who != "bob" {
		return Member{}, &Error{Status: 404, Message: "no join request from " + r.Who + " is pending", Advice: "pending: bob"}
	}
	return Member{Name: "bob", Role: "member"}, nil
}
func (m *memBackend) Deny(context.Context, MemberRequest) error              { return nil }
func (m *memBackend) Members(context.Context, string) ([]Member, error)      { return nil, nil }
func (m *memBackend) RemoveMember(context.Context, MemberRequest) error      { return nil }
func (m *memBackend) SetRole(context.Context, MemberRequest) (Member, error) { return Member{}, nil }
func (m *memBackend) Leave(context.Context, MemberRequest) error             { return nil }

func serve(t *testing.T, b Backend) (*Client, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "api")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "api.sock")
	ln, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- Serve(ctx, ln, b, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return NewClient(sock), sock
}

// countingListener counts the connections it accepted that are still open.
type countingListener struct {
	net.Listener
	open atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.open.Add(1)
	return &countedConn{Conn: c, l: l}, nil
}

type countedConn struct {
	net.Conn
	l    *countingListener
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}

// TestIdleConnectionsClosed: clients that are dropped with a keep-alive
// connection open do not keep it (and its goroutine and buffers) in the
// daemon for good.
func TestIdleConnectionsClosed(t *testing.T) {
	defer func(d time.Duration) { idleTimeout = d }(idleTimeout)
	idleTimeout = 200 * time.Millisecond
	sock := filepath.Join(t.TempDir(), "api.sock")
	ln, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- Serve(ctx, cl, newMem(), nil) }()
	defer func() { cancel(); <-done }()
	for range 20 { // an app's own client, never closing idle connections
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}
		resp, err := (&http.Client{Transport: tr}).Get("http://remora/v1/status")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if n := cl.open.Load(); n == 0 {
		t.Fatal("no connection counted open after 20 requests; the test cannot see what it checks")
	}
	for deadline := time.Now().Add(30 * time.Second); cl.open.Load() > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d idle connections still open after 30 s", cl.open.Load())
		}
	}
}

func TestSocketIsPrivate(t *testing.T) {
	_, sock := serve(t, newMem())
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, want 0600", fi.Mode().Perm())
	}
	if _, err := Listen(sock); err == nil {
		t.Fatal("a second daemon could take a live socket")
	}
}

func TestStaleSocketReplaced(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close() // a crashed daemon leaves the file behind
	ln2, err := Listen(sock)
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	ln2.Close()
}

func TestAckedCursor(t *testing.T) {
	b := newMem()
	c, _ := serve(t, b)
	ctx := t.Context()
	for _, s := range []string{"one", "two", "three"} {
		if _, err := c.Send(ctx, SendRequest{Circle: "c1", Text: s}); err != nil {
			t.Fatal(err)
		}
	}
	msgs, err := c.Messages(ctx, -1, 0)
	if err != nil || len(msgs) != 3 {
		t.Fatalf("messages %v, err %v", msgs, err)
	}
	if err := c.Ack(ctx, 2); err != nil {
		t.Fatal(err)
	}
	// An app that restarts asks from its acked cursor and sees only "three".
	msgs, err = c.Messages(ctx, -1, 0)
	if err != nil || len(msgs) != 1 || msgs[0].Text != "three" {
		t.Fatalf("after ack: %v, err %v", msgs, err)
	}
}

func TestLongPollAndStream(t *testing.T) {
	b := newMem()
	c, _ := serve(t, b)
	go func() { time.Sleep(100 * time.Millisecond); b.add("late") }()
	msgs, err := c.Messages(t.Context(), 0, 10*time.Second)
	if err != nil || len(msgs) != 1 || msgs[0].Text != "late" {
		t.Fatalf("long poll: %v, err %v", msgs, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	got := make(chan string, 10)
	go c.Stream(ctx, 0, func(m Message) error { got <- m.Text; return nil })
	b.add("streamed")
	for _, want := range []string{"late", "streamed"} {
		select {
		case g := <-got:
			if g != want {
				t.Fatalf("stream got %q, want %q", g, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("stream: %q never arrived", want)
		}
	}
}

func TestErrors(t *testing.T) {
	c, _ := serve(t, newMem())
	ctx := t.Context()
	tests := []struct {
		name   string
		call   func() error
		status int
		advice bool
	}{
		{"backend error keeps status and advice", func() error { _, err := c.Send(ctx, SendRequest{}); return err }, 400, true},
		{"join error", func() error { _, err := c.Join(ctx, JoinRequest{Invite: "x"}); return err }, 400, true},
		{"plain error is 500", func() error { _, err := c.Invite(ctx, InviteRequest{}); return err }, 500, false},
		{"unknown field", func() error {
			return c.do(ctx, http.MethodPost, "/v1/send", map[string]string{"circel": "typo"}, nil)
		}, 400, true},
		{"bad after", func() error { return c.do(ctx, http.MethodGet, "/v1/messages?after=x", nil, nil) }, 400, true},
		{"approve an unknown name", func() error { _, err := c.Approve(ctx, MemberRequest{Who: "mallory"}); return err }, 404, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ae *Error
			if err := tt.call(); !errors.As(err, &ae) || ae.Status != tt.status || (ae.Advice != "") != tt.advice {
				t.Fatalf("got %#v, want status %d advice=%v", err, tt.status, tt.advice)
			}
		})
	}

}

func TestMembershipRoutes(t *testing.T) {
	c, _ := serve(t, newMem())
	ctx := t.Context()
	st, err := c.JoinStatus(ctx, "ab/cd", time.Second)
	if err != nil || st.ID != "ab/cd" || st.SafetyCode == "" {
		t.Fatalf("join status: %+v, %v", st, err)
	}
	m, err := c.Approve(ctx, MemberRequest{Who: "bob"})
	if err != nil || m.Name != "bob" {
		t.Fatalf("approve: %+v, %v", m, err)
	}
	p, err := c.Pending(ctx, "")
	if err != nil || p == nil {
		t.Fatalf("pending: %v, %v (want an empty list, not null)", p, err)
	}
	for name, call := range map[string]func() error{
		"deny":   func() error { return c.Deny(ctx, MemberRequest{Who: "bob"}) },
		"remove": func() error { return c.RemoveMember(ctx, MemberRequest{Who: "bob"}) },
		"leave":  func() error { return c.Leave(ctx, MemberRequest{}) },
		"role":   func() error { _, err := c.SetRole(ctx, MemberRequest{Who: "bob", Role: "admin"}); return err },
		"members": func() error {
			_, err := c.Members(ctx, "")
			return err
		},
	} {
		if err := call(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestDaemonNotRunning(t *testing.T) {
	c := NewClient(filepath.Join(t.TempDir(), "nothing.sock"))
	_, err := c.Status(t.Context())
	if !errors.Is(err, ErrNotRunning) {
		t.Fatalf("got %v, want ErrNotRunning", err)
	}
	if want := "remora run"; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not say how to start the daemon", err)
	}
}
