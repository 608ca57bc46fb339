package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"syscall"
	"time"
)

// ErrNotRunning means no daemon answers on the socket.
var ErrNotRunning = errors.New("the remora daemon is not running")

// Client talks to a daemon's API socket.
type Client struct {
	Socket string
	http   *http.Client
}

// NewClient returns a client for the socket at path.
func NewClient(path string) *Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}, IdleConnTimeout: 10 * time.Second} // reconnecting to a local socket is cheap
	return &Client{Socket: path, http: &http.Client{Transport: tr}}
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("api: encode: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://remora"+path, body)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("%w (no socket at %s): start it with `remora run`", ErrNotRunning, c.Socket)
		}
		return fmt.Errorf("api: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		ae := &Error{Status: resp.StatusCode}
		if err := json.NewDecoder(resp.Body).Decode(ae); err != nil || ae.Message == "" {
			ae.Message = resp.Status
		}
		return ae
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("api: decode %s: %w", path, err)
	}
	return nil
}

func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	return s, c.do(ctx, http.MethodGet, "/v1/status", nil, &s)
}

func (c *Client) Send(ctx context.Context, req SendRequest) (SendResult, error) {
	var r SendResult
	return r, c.do(ctx, http.MethodPost, "/v1/send", req, &r)
}

// Messages long-polls for entries after seq (-1: after the acked cursor).
func (c *Client) Messages(ctx context.Context, after int64, wait time.Duration) ([]Message, error) {
	var m []Message
	q := url.Values{"after": {strconv.FormatInt(after, 10)}, "wait": {wait.String()}}
	return m, c.do(ctx, http.MethodGet, "/v1/messages?"+q.Encode(), nil, &m)
}

// Stream calls fn for each message after seq until ctx ends or fn fails.
func (c *Client) Stream(ctx context.Context, after int64, fn func(Message) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://remora/v1/messages/stream?after="+strconv.FormatInt(after, 10), nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("%w (no socket at %s): start it with `remora run`", ErrNotRunning, c.Socket)
		}
		return fmt.Errorf("api: stream: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var m Message
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return fmt.Errorf("api: stream: %w", err)
		}
		if err := fn(m); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return sc.Err()
}

func (c *Client) Ack(ctx context.Context, seq int64) error {
	return c.do(ctx, http.MethodPost, "/v1/messages/ack", map[string]int64{"seq": seq}, nil)
}

func (c *Client) Peers(ctx context.Context) ([]Peer, error) {
	var p []Peer
	return p, c.do(ctx, http.MethodGet, "/v1/peers", nil, &p)
}

func (c *Client) Channels(ctx context.Context) ([]Channel, error) {
	var ch []Channel
	return ch, c.do(ctx, http.MethodGet, "/v1/channels", nil, &ch)
}

func (c *Client) Events(ctx context.Context, after int64, wait time.Duration) ([]Event, error) {
	var ev []Event
	q := url.Values{"after": {strconv.FormatInt(after, 10)}, "wait": {wait.String()}}
	return ev, c.do(ctx, http.MethodGet, "/v1/events?"+q.Encode(), nil, &ev)
}

func (c *Client) CreateCircle(ctx context.Context, req CreateCircleRequest) (Circle, error) {
	var ci Circle
	return ci, c.do(ctx, http.MethodPost, "/v1/circles", req, &ci)
}

func (c *Client) Invite(ctx context.Context, req InviteRequest) (InviteResult, error) {
	var r InviteResult
	return r, c.do(ctx, http.MethodPost, "/v1/invites", req, &r)
}

// Join sends a join request; the join is pending until an admin approves.
func (c *Client) Join(ctx context.Context, req JoinRequest) (JoinStatus, error) {
	var st JoinStatus
	return st, c.do(ctx, http.MethodPost, "/v1/join", req, &st)
}

// JoinStatus long-polls a join of this device while it is pending.
func (c *Client) JoinStatus(ctx context.Context, id string, wait time.Duration) (JoinStatus, error) {
	var st JoinStatus
	q := url.Values{"wait": {wait.String()}}
	return st, c.do(ctx, http.MethodGet, "/v1/joins/"+url.PathEscape(id)+"?"+q.Encode(), nil, &st)
}

func (c *Client) Pending(ctx context.Context, circle string) ([]PendingJoin, error) {
	var p []PendingJoin
	return p, c.do(ctx, http.MethodGet, "/v1/pending?"+url.Values{"circle": {circle}}.Encode(), nil, &p)
}

func (c *Client) Approve(ctx context.Context, req MemberRequest) (Member, error) {
	var m Member
	return m, c.do(ctx, http.MethodPost, "/v1/pending/approve", req, &m)
}

func (c *Client) Deny(ctx context.Context, req MemberRequest) error {
	return c.do(ctx, http.MethodPost, "/v1/pending/deny", req, nil)
}

func (c *Client) Members(ctx context.Context, circle string) ([]Member, error) {
	var m []Member
	return m, c.do(ctx, http.MethodGet, "/v1/members?"+url.Values{"circle": {circle}}.Encode(), nil, &m)
}

func (c *Client) RemoveMember(ctx context.Context, req MemberRequest) error {
	return c.do(ctx, http.MethodPost, "/v1/members/remove", req, nil)
}

func (c *Client) SetRole(ctx context.Context, req MemberRequest) (Member, error) {
	var m Member
	return m, c.do(ctx, http.MethodPost, "/v1/members/role", req, &m)
}

func (c *Client) Leave(ctx context.Context, req MemberRequest) error {
	return c.do(ctx, http.MethodPost, "/v1/circles/leave", req, nil)
}
