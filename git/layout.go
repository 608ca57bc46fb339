package git

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
)

// Layout of a member's tree (see doc.go):
//
//	log/<bucket>/<idempotency key>   one envelope; bucket = UTC hour YYYYMMDDHH
//	board/<base64url(board key)>     latest value of one board key
const (
	logDir       = "log"
	boardDir     = "board"
	bucketLayout = "2006010215"
	bucketSpan   = time.Hour
	// maxBoardKey bounds a board key so its file name stays under 255 bytes.
	maxBoardKey = 180
)

var keyRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

var errForeign = errors.New("not a remora path")

// bucketOf is the log bucket of t.
func bucketOf(t time.Time) string { return t.UTC().Format(bucketLayout) }

// parseBucket returns the start of bucket b.
func parseBucket(b string) (time.Time, error) {
	if len(b) != len(bucketLayout) {
		return time.Time{}, fmt.Errorf("bucket %q: %w", b, errForeign)
	}
	t, err := time.Parse(bucketLayout, b)
	if err != nil {
		return time.Time{}, fmt.Errorf("bucket %q: %w", b, errForeign)
	}
	return t, nil
}

func logPath(bucket, key string) string { return logDir + "/" + bucket + "/" + key }

// parseLogPath splits "log/<bucket>/<key>", rejecting anything else.
func parseLogPath(p string) (bucket, key string, err error) {
	parts := strings.Split(p, "/")
	if len(parts) != 3 || parts[0] != logDir {
		return "", "", fmt.Errorf("path %q: %w", p, errForeign)
	}
	if _, err := parseBucket(parts[1]); err != nil {
		return "", "", err
	}
	if !keyRE.MatchString(parts[2]) {
		return "", "", fmt.Errorf("path %q: key: %w", p, errForeign)
	}
	return parts[1], parts[2], nil
}

func boardName(key string) string { return base64.RawURLEncoding.EncodeToString([]byte(key)) }

func boardPath(key string) string { return boardDir + "/" + boardName(key) }

// parseBoardName decodes a board file name back to its key.
func parseBoardName(name string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(name)
	if err != nil || len(b) == 0 || len(b) > maxBoardKey || base64.RawURLEncoding.EncodeToString(b) != name {
		return "", fmt.Errorf("board file %q: %w", name, errForeign)
	}
	return string(b), nil
}

// itemID is the ID of a log item: "<member>/<bucket>/<key>".
func itemID(member, bucket, key string) string { return member + "/" + bucket + "/" + key }

// parseItemID splits an item ID.
func parseItemID(id string) (member, bucket, key string, err error) {
	m, rest, ok := strings.Cut(id, "/")
	if !ok || !memberRE.MatchString(m) {
		return "", "", "", fmt.Errorf("git: item ID %q is not one this channel returned", id)
	}
	b, k, err := parseLogPath(logDir + "/" + rest)
	if err != nil {
		return "", "", "", fmt.Errorf("git: item ID %q is not one this channel returned", id)
	}
	return m, b, k, nil
}

// refPos is how far a subscription got in one member's ref: everything
// reachable from Done is delivered; if Target is set, so are the paths of
// diff(Done, Target) up to and including After (in path order).
type refPos struct {
	Done   plumbing.Hash
	Target plumbing.Hash
	After  string
}

// cursor maps member ref names to positions. Encoded as JSON, version 1.
type cursor map[string]refPos

type wireCursor struct {
	V    int                `json:"v"`
	Refs map[string]wirePos `json:"refs"`
}

type wirePos struct {
	D string `json:"d,omitempty"`
	T string `json:"t,omitempty"`
	A string `json:"a,omitempty"`
}

// maxCursorRefs bounds a decoded cursor.
const maxCursorRefs = 10000

func (c cursor) encode() []byte {
	w := wireCursor{V: 1, Refs: make(map[string]wirePos, len(c))}
	for m, p := range c {
		wp := wirePos{A: p.After}
		if !p.Done.IsZero() {
			wp.D = p.Done.String()
		}
		if !p.Target.IsZero() {
			wp.T = p.Target.String()
		}
		w.Refs[m] = wp
	}
	b, _ := json.Marshal(w) // maps of strings always marshal
	return b
}

var errBadCursor = errors.New("git: cursor is not one this adapter wrote")

// decodeCursor parses an encoded cursor; nil or empty input is the empty
// cursor (start from the earliest retained item).
func decodeCursor(b []byte) (cursor, error) {
	if len(b) == 0 {
		return cursor{}, nil
	}
	var w wireCursor
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadCursor, err)
	}
	if w.V != 1 {
		return nil, fmt.Errorf("%w: version %d", errBadCursor, w.V)
	}
	if len(w.Refs) > maxCursorRefs {
		return nil, fmt.Errorf("%w: %d refs", errBadCursor, len(w.Refs))
	}
	c := make(cursor, len(w.Refs))
	for m, wp := range w.Refs {
		if !memberRE.MatchString(m) {
			return nil, fmt.Errorf("%w: ref name %q", errBadCursor, m)
		}
		var p refPos
		var err error
		if p.Done, err = parseHash(wp.D); err != nil {
			return nil, err
		}
		if p.Target, err = parseHash(wp.T); err != nil {
			return nil, err
		}
		if (wp.A == "") != p.Target.IsZero() {
			return nil, fmt.Errorf("%w: target and position go together", errBadCursor)
		}
		if p.Target.IsZero() && p.Done.IsZero() {
			return nil, fmt.Errorf("%w: empty position for %q", errBadCursor, m)
		}
		if wp.A != "" {
			if _, _, err := parseLogPath(wp.A); err != nil {
				return nil, fmt.Errorf("%w: %v", errBadCursor, err)
			}
		}
		p.After = wp.A
		c[m] = p
	}
	return c, nil
}

func parseHash(s string) (plumbing.Hash, error) {
	if s == "" {
		return plumbing.ZeroHash, nil
	}
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(plumbing.ZeroHash) || s != strings.ToLower(s) {
		return plumbing.ZeroHash, fmt.Errorf("%w: hash %q", errBadCursor, s)
	}
	h := plumbing.NewHash(s)
	if h.IsZero() {
		return plumbing.ZeroHash, fmt.Errorf("%w: zero hash", errBadCursor)
	}
	return h, nil
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
