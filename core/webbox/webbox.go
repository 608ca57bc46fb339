// Package webbox is the static web file bootstrap box: members publish
// their sealed presence entries in one file on any web host the circle has,
// and read each other's from it.
//
// # The file
//
//	remora-board v1
//	<board key> <unix seconds of the write> <base64 (no padding) of the sealed envelope>
//	...
//
// Board keys are derived from the circle's epoch secret and values are
// sealed envelopes of the circle (core/node), so the host and its visitors
// learn nothing, and a line a stranger adds can only waste a read. Writers
// drop lines older than MaxAge.
//
// # Reading
//
// One GET of the URL, conditional (If-None-Match with the last ETag, else
// If-Modified-Since), so a poll of an unchanged file costs a 304.
//
// # Publishing, three ways
//
//   - put: HTTP PUT of the whole file (WebDAV, or any server that accepts
//     PUT), read-modify-write under a short exclusive WebDAV LOCK where the
//     server has locks, and with If-Match on the ETag read (If-None-Match: *
//     when there is no file yet), retried on 412 and 423 so concurrent
//     members do not erase each other's lines; optional basic auth.
//   - command: the merged file is written to a temporary file and a
//     configured command publishes it (e.g. a git push to a pages
//     repository); it gets the path in $REMORA_BOARD_FILE.
//   - dropbox: one POST per entry (key, value, token) to the PHP drop-box
//     script shipped in php/remora-board.php, for shared PHP hosting.
package webbox

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/remora-p2p/remora/core/discovery"
)

// Publish modes.
const (
	PublishNone    = ""
	PublishPut     = "put"
	PublishCommand = "command"
	PublishDropbox = "dropbox"
)

// Options configure a Box.
type Options struct {
	// URL is where the file is read (and, for put and dropbox, written).
	URL string
	// Publish is how this node writes: put, command, dropbox or "" (read only).
	Publish string
	// Command publishes the file (Publish = command); run with /bin/sh -c,
	// the file's path in $REMORA_BOARD_FILE.
	Command string
	// Username and Password are basic-auth credentials for put.
	Username, Password string
	// Token is the drop-box script's write token (dropbox).
	Token string
	// MaxAge drops lines not rewritten for this long (default 7 days).
	MaxAge time.Duration
	// Client is the HTTP client (default: 30 s timeout).
	Client *http.Client
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Limits.
const (
	maxFile  = 1 << 20
	maxValue = 4096
	header   = "remora-board v1"
)

var b64 = base64.RawStdEncoding

// Box is the static web file box. It implements discovery.Board.
type Box struct {
	o Options

	mu      sync.Mutex
	etag    string // of the last Get
	lastMod string
	mine    map[string]bool
}

// New checks o and returns a Box.
func New(o Options) (*Box, error) {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("webbox: url %q: want an http(s) address of the file", o.URL)
	}
	switch o.Publish {
	case PublishNone, PublishPut, PublishDropbox:
	case PublishCommand:
		if strings.TrimSpace(o.Command) == "" {
			return nil, errors.New("webbox: publish = \"command\" needs command (e.g. a script that pushes $REMORA_BOARD_FILE)")
		}
	default:
		return nil, fmt.Errorf("webbox: publish %q: want put, command, dropbox or nothing (read only)", o.Publish)
	}
	if o.MaxAge <= 0 {
		o.MaxAge = 7 * 24 * time.Hour
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 30 * time.Second}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Box{o: o, mine: map[string]bool{}}, nil
}

// Name implements discovery.Board.
func (b *Box) Name() string { return "web" }

// MaxValue implements discovery.Board.
func (b *Box) MaxValue() int { return maxValue }

type line struct {
	at    int64
	value string // base64
}

// Get implements discovery.Board.
func (b *Box) Get(ctx context.Context) (map[string][]byte, error) {
	b.mu.Lock()
	etag, lastMod := b.etag, b.lastMod
	b.mu.Unlock()
	lines, etag, lastMod, err := b.fetch(ctx, etag, lastMod)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.etag, b.lastMod = etag, lastMod
	b.mu.Unlock()
	out := map[string][]byte{}
	for k, l := range lines {
		if v, err := b64.DecodeString(l.value); err == nil && len(v) > 0 && len(v) <= maxValue {
			out[k] = v
		}
	}
	return out, nil
}

// fetch GETs the file; with etag or lastMod set it is conditional and
// returns ErrNotModified on 304. A missing file (404) is an empty board.
func (b *Box) fetch(ctx context.Context, etag, lastMod string) (map[string]line, string, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.o.URL, nil)
	if err != nil {
		return nil, "", "", err
	}
	switch {
	case etag != "":
		req.Header.Set("If-None-Match", etag)
	case lastMod != "":
		req.Header.Set("If-Modified-Since", lastMod)
	}
	req.Header.Set("Cache-Control", "no-cache")
	resp, err := b.o.Client.Do(req)
	if err != nil {
		return nil, "", "", &discovery.BoxError{Err: fmt.Errorf("web: GET %s: %w", b.o.URL, err), Fix: "check [web] url in config.toml and that the host is up"}
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return nil, etag, lastMod, discovery.ErrNotModified
	case http.StatusNotFound:
		return map[string]line{}, "", "", nil
	case http.StatusOK:
	default:
		return nil, "", "", &discovery.BoxError{Err: fmt.Errorf("web: GET %s: %s", b.o.URL, resp.Status), Fix: "check [web] url: the host must serve the file to anyone"}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxFile+1))
	if err != nil {
		return nil, "", "", fmt.Errorf("web: read %s: %w", b.o.URL, err)
	}
	if len(body) > maxFile {
		return nil, "", "", fmt.Errorf("web: %s is larger than %d bytes", b.o.URL, maxFile)
	}
	lines, err := parse(body)
	if err != nil {
		return nil, "", "", &discovery.BoxError{Err: fmt.Errorf("web: %s: %w", b.o.URL, err), Fix: "the URL does not serve a remora board file: check [web] url"}
	}
	return lines, resp.Header.Get("ETag"), resp.Header.Get("Last-Modified"), nil
}

// parse reads a board file. Lines that do not parse are skipped (a writer
// rewrites the file without them); a file without the header is an error.
func parse(body []byte) (map[string]line, error) {
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 64<<10), maxFile)
	out := map[string]line{}
	first := true
	for sc.Scan() {
		text := strings.TrimSpace(sc.Text())
		if first {
			if text != header {
				return nil, fmt.Errorf("first line %q, want %q", truncate(text, 40), header)
			}
			first = false
			continue
		}
		f := strings.Fields(text)
		if len(f) != 3 || f[0] == "" || len(f[2]) > maxValue*4/3+4 {
			continue
		}
		at, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		if old, ok := out[f[0]]; !ok || at > old.at {
			out[f[0]] = line{at: at, value: f[2]}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if first {
		return nil, errors.New("empty file")
	}
	return out, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func render(lines map[string]line) []byte {
	keys := make([]string, 0, len(lines))
	for k := range lines {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var buf bytes.Buffer
	buf.WriteString(header + "\n")
	for _, k := range keys {
		fmt.Fprintf(&buf, "%s %d %s\n", k, lines[k].at, lines[k].value)
	}
	return buf.Bytes()
}

// Put implements discovery.Board.
func (b *Box) Put(ctx context.Context, entries map[string][]byte) error {
	for k, v := range entries {
		if len(v) > maxValue || strings.ContainsAny(k, " \t\r\n") || k == "" {
			return fmt.Errorf("web: entry %q (%d bytes) does not fit the board", k, len(v))
		}
	}
	var err error
	switch b.o.Publish {
	case PublishNone:
		return discovery.ErrReadOnly
	case PublishDropbox:
		err = b.putDropbox(ctx, entries)
	default:
		err = b.putFile(ctx, entries)
	}
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.mine = map[string]bool{}
	for k := range entries {
		b.mine[k] = true
	}
	b.mu.Unlock()
	return nil
}

// merge replaces our lines in cur with entries and drops old lines.
func (b *Box) merge(cur map[string]line, entries map[string][]byte) map[string]line {
	now := b.o.Now()
	b.mu.Lock()
	for k := range b.mine {
		delete(cur, k)
	}
	b.mu.Unlock()
	for k, l := range cur {
		if now.Sub(time.Unix(l.at, 0)) > b.o.MaxAge {
			delete(cur, k)
		}
	}
	for k, v := range entries {
		cur[k] = line{at: now.Unix(), value: b64.EncodeToString(v)}
	}
	return cur
}

// putFile is read-modify-write of the whole file, by PUT or a command.
// With PUT the file is locked (WebDAV LOCK) while we read and write it,
// where the server supports locks: If-Match alone is checked and applied
// by servers such as Apache's mod_dav in two steps, so two members writing
// at once could both pass it and one would erase the other's line.
func (b *Box) putFile(ctx context.Context, entries map[string][]byte) error {
	var last error
	for attempt := 0; attempt < 10; attempt++ {
		var token string
		if b.o.Publish == PublishPut {
			var err error
			if token, err = b.lock(ctx); err != nil {
				last = err
				if errors.Is(err, errLocked) {
					if err := sleep(ctx, time.Duration(rand.Int64N(int64(attempt+1)*int64(200*time.Millisecond)))); err != nil {
						return err
					}
					continue
				}
				return err
			}
		}
		cur, etag, _, err := b.fetch(ctx, "", "")
		if err != nil {
			b.unlock(token)
			return err
		}
		body := render(b.merge(cur, entries))
		if b.o.Publish == PublishCommand {
			return b.runCommand(ctx, body)
		}
		last = b.put(ctx, body, etag, token)
		b.unlock(token)
		var pe *preconditionError
		if !errors.As(last, &pe) {
			return last
		}
		// another member wrote in between: read again, after a random pause
		if err := sleep(ctx, time.Duration(rand.Int64N(int64(attempt+1)*int64(200*time.Millisecond)))); err != nil {
			return err
		}
	}
	return last
}

type preconditionError struct{ status string }

func (e *preconditionError) Error() string {
	return "web: PUT: the file changed while we wrote it (" + e.status + ")"
}

var errLocked = errors.New("web: the file is locked by another writer")

const lockBody = `<?xml version="1.0" encoding="utf-8"?>
<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>remora</D:owner></D:lockinfo>`

// lock takes a short exclusive WebDAV write lock on the file and returns
// its token; "" when the server has no locks (then If-Match alone guards).
func (b *Box) lock(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, "LOCK", b.o.URL, strings.NewReader(lockBody))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/xml; charset=utf-8")
	req.Header.Set("Timeout", "Second-30")
	req.Header.Set("Depth", "0")
	b.auth(req)
	resp, err := b.o.Client.Do(req)
	if err != nil {
		return "", &discovery.BoxError{Err: fmt.Errorf("web: LOCK %s: %w", b.o.URL, err), Fix: "check [web] url and that the host is up"}
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusCreated:
		return strings.Trim(resp.Header.Get("Lock-Token"), "<> "), nil
	case resp.StatusCode == http.StatusLocked:
		return "", errLocked
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return "", &discovery.BoxError{Err: fmt.Errorf("web: LOCK %s: %s", b.o.URL, resp.Status),
			Fix: "the server refused the write: check [web] username and the password secret"}
	}
	return "", nil // no WebDAV locks here: If-Match alone
}

func (b *Box) unlock(token string) {
	if token == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "UNLOCK", b.o.URL, nil)
	if err != nil {
		return
	}
	req.Header.Set("Lock-Token", "<"+token+">")
	b.auth(req)
	if resp, err := b.o.Client.Do(req); err == nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}
}

func (b *Box) auth(req *http.Request) {
	if b.o.Username != "" || b.o.Password != "" {
		req.SetBasicAuth(b.o.Username, b.o.Password)
	}
}

func (b *Box) put(ctx context.Context, body []byte, etag, token string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, b.o.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	switch {
	case token != "" && etag != "":
		req.Header.Set("If", fmt.Sprintf("(<%s> [%s])", token, etag))
	case token != "":
		req.Header.Set("If", fmt.Sprintf("(<%s>)", token))
	case etag != "":
		req.Header.Set("If-Match", etag)
	default:
		req.Header.Set("If-None-Match", "*")
	}
	b.auth(req)
	resp, err := b.o.Client.Do(req)
	if err != nil {
		return &discovery.BoxError{Err: fmt.Errorf("web: PUT %s: %w", b.o.URL, err), Fix: "check [web] url and that the host is up"}
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusPreconditionFailed:
		return &preconditionError{resp.Status}
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return &discovery.BoxError{Err: fmt.Errorf("web: PUT %s: %s", b.o.URL, resp.Status),
			Fix: "the server refused the write: check [web] username and the password secret"}
	case resp.StatusCode == http.StatusMethodNotAllowed || resp.StatusCode == http.StatusNotImplemented:
		return &discovery.BoxError{Err: fmt.Errorf("web: PUT %s: %s", b.o.URL, resp.Status),
			Fix: "this server does not accept PUT: enable WebDAV there, or use publish = \"command\" or the PHP drop-box"}
	}
	return &discovery.BoxError{Err: fmt.Errorf("web: PUT %s: %s", b.o.URL, resp.Status), Fix: "see the web server's log"}
}

func (b *Box) runCommand(ctx context.Context, body []byte) error {
	f, err := os.CreateTemp("", "remora-board-*.txt")
	if err != nil {
		return fmt.Errorf("web: command: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(body); err != nil {
		f.Close()
		return fmt.Errorf("web: command: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("web: command: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, "/bin/sh", "-c", b.o.Command)
	cmd.Env = append(os.Environ(), "REMORA_BOARD_FILE="+f.Name())
	out, err := cmd.CombinedOutput()
	if err != nil {
		return &discovery.BoxError{Err: fmt.Errorf("web: publish command failed: %w: %s", err, truncate(strings.TrimSpace(string(out)), 300)),
			Fix: "run [web] command by hand with REMORA_BOARD_FILE set to see why"}
	}
	return nil
}

// putDropbox posts each entry to the drop-box script, and deletes what we
// wrote before under keys no longer given.
func (b *Box) putDropbox(ctx context.Context, entries map[string][]byte) error {
	b.mu.Lock()
	var stale []string
	for k := range b.mine {
		if _, ok := entries[k]; !ok {
			stale = append(stale, k)
		}
	}
	b.mu.Unlock()
	post := func(key, value string) error {
		form := url.Values{"key": {key}, "value": {value}}
		if b.o.Token != "" {
			form.Set("token", b.o.Token)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.o.URL, strings.NewReader(form.Encode()))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := b.o.Client.Do(req)
		if err != nil {
			return &discovery.BoxError{Err: fmt.Errorf("web: POST %s: %w", b.o.URL, err), Fix: "check [web] url and that the host is up"}
		}
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		if resp.StatusCode != http.StatusOK {
			fix := "see the drop-box's answer"
			if resp.StatusCode == http.StatusForbidden {
				fix = "the drop-box refused the token: set the [web] token secret to the script's REMORA_BOARD_TOKEN"
			}
			return &discovery.BoxError{Err: fmt.Errorf("web: POST %s: %s: %s", b.o.URL, resp.Status, strings.TrimSpace(string(msg))), Fix: fix}
		}
		return nil
	}
	keys := make([]string, 0, len(entries))
	for k := range entries {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := post(k, b64.EncodeToString(entries[k])); err != nil {
			return err
		}
	}
	for _, k := range stale {
		if err := post(k, ""); err != nil {
			return err
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
