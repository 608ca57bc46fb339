// Package seqindex gives every item of a service that can only be listed
// (files in a folder or an HTTP store, objects in a bucket) a sequence number
// the first time a channel sees it, and makes cursors positions in that
// index.
//
// Such services have no order an adapter could resume from: names are
// random keys, and sync tools and late writers add items anywhere, so any
// high-water mark over names or times loses late items. The index numbers
// items as the reader meets them, like an IMAP UID assigned by the client:
// a cursor is "after number N of index X", about 20 bytes however many items
// the service holds, and an item listed late simply gets the next number.
//
// The index lives in the channel's state directory as an append-only text
// file, fsynced before new entries are returned, so a delivered item's
// number survives a crash. A cursor from another index (the state was lost,
// or the service was replaced: a new scope) or ahead of this one (the state
// was restored from an older copy) is sdk.CodeCursorInvalid, which makes
// the host resubscribe from the start and dedupe: nothing is lost.
//
// Typical use in Subscribe:
//
//	pos, err := idx.Start(req.Cursor) // first: CodeCursorInvalid as needed
//	for {
//		names, err := list(ctx)       // what the service has now
//		if _, err := idx.Add(names...); err != nil { ... }
//		for _, e := range idx.After(pos) {
//			... fetch e.Name, deliver it with Cursor: idx.Cursor(e.Seq) ...
//			pos = e.Seq
//		}
//		... wait for the next poll ...
//	}
package seqindex

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/remora-p2p/remora/sdk"
)

// header starts the index file.
const header = "remora-seqindex 1"

// IDLen is the length of an index ID.
const IDLen = 16

// Entry is one indexed item.
type Entry struct {
	Seq  uint64
	Name string
}

// Index numbers the items of one listed service. It is safe for concurrent
// use.
type Index struct {
	mu      sync.Mutex
	path    string // "" keeps the index in memory
	id      [IDLen]byte
	scope   string
	next    uint64
	entries []Entry // by Seq
	have    map[string]uint64
	f       *os.File // append handle
}

// Open loads the index at path for scope, or starts a new one; fresh says
// why a new one was started ("" when an existing one was loaded: "new",
// "another scope", or what was wrong with the file). scope names what is
// listed (the service URL and collection, a folder's identity): an index
// kept for another scope is replaced. With path "" the index lives in
// memory only, and every restart invalidates the cursors once.
func Open(path, scope string) (x *Index, fresh string, err error) {
	if path == "" {
		return newIndex("", scope), "no state dir", nil
	}
	x, err = load(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		fresh = "new"
	case err != nil:
		fresh = err.Error()
	case x.scope != scope:
		fresh = "another scope"
	default:
		if err := x.rewrite(); err != nil { // drops a torn last line
			return nil, "", err
		}
		return x, "", nil
	}
	x = newIndex(path, scope)
	if err := x.rewrite(); err != nil {
		return nil, "", err
	}
	return x, fresh, nil
}

func newIndex(path, scope string) *Index {
	x := &Index{path: path, scope: scope, next: 1, have: map[string]uint64{}}
	rand.Read(x.id[:])
	return x
}

func load(path string) (*Index, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	if !sc.Scan() {
		return nil, fmt.Errorf("index %s: empty", path)
	}
	h := strings.SplitN(sc.Text(), " ", 5)
	if len(h) != 5 || h[0]+" "+h[1] != header {
		return nil, fmt.Errorf("index %s: bad header", path)
	}
	x := &Index{path: path, have: map[string]uint64{}}
	if len(h[2]) != 2*IDLen {
		return nil, fmt.Errorf("index %s: bad ID", path)
	}
	if _, err := hex.Decode(x.id[:], []byte(h[2])); err != nil {
		return nil, fmt.Errorf("index %s: bad ID", path)
	}
	if x.next, err = strconv.ParseUint(h[3], 10, 64); err != nil || x.next == 0 {
		return nil, fmt.Errorf("index %s: bad next number %q", path, h[3])
	}
	if x.scope, err = strconv.Unquote(h[4]); err != nil {
		return nil, fmt.Errorf("index %s: bad scope", path)
	}
	complete := bytes.HasSuffix(b, []byte("\n"))
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if !complete && len(lines) > 0 {
		lines = lines[:len(lines)-1] // a torn append: never synced, never returned
	}
	var last uint64
	for n, line := range lines {
		num, quoted, ok := strings.Cut(line, " ")
		seq, err := strconv.ParseUint(num, 10, 64)
		if !ok || err != nil || seq <= last {
			return nil, fmt.Errorf("index %s: line %d: bad entry", path, n+2)
		}
		name, err := strconv.Unquote(quoted)
		if err != nil {
			return nil, fmt.Errorf("index %s: line %d: bad name", path, n+2)
		}
		x.put(Entry{Seq: seq, Name: name})
		last = seq
	}
	x.next = max(x.next, last+1)
	return x, nil
}

func (x *Index) put(e Entry) {
	x.entries = append(x.entries, e)
	x.have[e.Name] = e.Seq
}

// ID is the index's identity, part of every cursor it makes.
func (x *Index) ID() [IDLen]byte { return x.id }

// Len is the number of entries.
func (x *Index) Len() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.entries)
}

// Has reports whether name is indexed, and its number.
func (x *Index) Has(name string) (uint64, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	seq, ok := x.have[name]
	return seq, ok
}

// Add gives the names not indexed yet the next numbers, in sorted order,
// makes them durable, and returns the new entries. Names already indexed
// (and repeats) are ignored.
func (x *Index) Add(names ...string) ([]Entry, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	var fresh []string
	for _, n := range names {
		if _, ok := x.have[n]; !ok {
			fresh = append(fresh, n)
		}
	}
	if len(fresh) == 0 {
		return nil, nil
	}
	slices.Sort(fresh)
	fresh = slices.Compact(fresh)
	var buf bytes.Buffer
	added := make([]Entry, len(fresh))
	for i, n := range fresh {
		added[i] = Entry{Seq: x.next + uint64(i), Name: n}
		fmt.Fprintf(&buf, "%d %s\n", added[i].Seq, strconv.Quote(n))
	}
	if x.f != nil {
		if _, err := x.f.Write(buf.Bytes()); err != nil {
			return nil, fmt.Errorf("seqindex: append: %w", err)
		}
		if err := x.f.Sync(); err != nil {
			return nil, fmt.Errorf("seqindex: sync: %w", err)
		}
	}
	for _, e := range added {
		x.put(e)
	}
	x.next += uint64(len(added))
	return added, nil
}

// Start checks a subscription's cursor against the index and returns the
// position to read after (0 for a nil cursor: from the start). Call it
// when the subscription starts, before the subscription lists and adds
// anything: a cursor ahead of the index is only recognisable as such
// before new items have taken the numbers it points past. A cursor this
// index did not make, one ahead of it, or one that does not parse is an
// *sdk.Error with CodeCursorInvalid.
func (x *Index) Start(cursor []byte) (uint64, error) {
	if cursor == nil {
		return 0, nil
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	id, seq, mark, err := decodeCursor(cursor)
	at, found := x.at(seq)
	switch {
	case err != nil:
		return 0, sdk.Errorf(sdk.CodeCursorInvalid, "seqindex: %v: resubscribe from the start", err)
	case id != x.id:
		return 0, sdk.Errorf(sdk.CodeCursorInvalid, "seqindex: the cursor belongs to another index (state lost, or the service was replaced): resubscribe from the start")
	case seq >= x.next:
		return 0, sdk.Errorf(sdk.CodeCursorInvalid, "seqindex: the cursor (item %d) is ahead of the index (%d items): the state was restored from an older copy; resubscribe from the start", seq, x.next-1)
	case mark != nil && found && !bytes.Equal(mark, markOf(at.Name)):
		// The index was restored from an older copy and has numbered other
		// items since: position seq is another item now.
		return 0, sdk.Errorf(sdk.CodeCursorInvalid, "seqindex: the cursor's item %d is another item in this index (the state was restored from an older copy): resubscribe from the start", seq)
	}
	return seq, nil
}

// at returns the entry numbered seq, if the index still has it.
func (x *Index) at(seq uint64) (Entry, bool) {
	i := sort.Search(len(x.entries), func(i int) bool { return x.entries[i].Seq >= seq })
	if i < len(x.entries) && x.entries[i].Seq == seq {
		return x.entries[i], true
	}
	return Entry{}, false
}

// After returns the entries numbered above pos.
func (x *Index) After(pos uint64) []Entry {
	x.mu.Lock()
	defer x.mu.Unlock()
	i := sort.Search(len(x.entries), func(i int) bool { return x.entries[i].Seq > pos })
	return slices.Clone(x.entries[i:])
}

// Cursor is the cursor that resumes just after item seq. It carries a mark
// of that item's name, so that Start notices an index restored from an
// older copy that has since given seq to another item.
func (x *Index) Cursor(seq uint64) []byte {
	x.mu.Lock()
	e, ok := x.at(seq)
	x.mu.Unlock()
	if !ok {
		return EncodeCursor(x.id, seq)
	}
	b := make([]byte, 0, 1+IDLen+markLen+binary.MaxVarintLen64)
	b = append(b, cursorMarked)
	b = append(b, x.id[:]...)
	b = append(b, markOf(e.Name)...)
	return binary.AppendUvarint(b, seq)
}

// markLen is the length of an item's mark in a cursor.
const markLen = 8

func markOf(name string) []byte {
	h := sha256.Sum256([]byte(name))
	return h[:markLen]
}

// Forget drops names from the index (deleted or expired items) and
// rewrites it. Their numbers are never reused.
func (x *Index) Forget(names ...string) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	drop := map[string]bool{}
	for _, n := range names {
		if _, ok := x.have[n]; ok {
			drop[n] = true
			delete(x.have, n)
		}
	}
	if len(drop) == 0 {
		return nil
	}
	x.entries = slices.DeleteFunc(x.entries, func(e Entry) bool { return drop[e.Name] })
	return x.rewrite()
}

// Close releases the index file.
func (x *Index) Close() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.f == nil {
		return nil
	}
	err := x.f.Close()
	x.f = nil
	return err
}

// rewrite writes the whole index atomically and reopens it for appends.
func (x *Index) rewrite() error {
	if x.path == "" {
		return nil
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "%s %x %d %s\n", header, x.id, x.next, strconv.Quote(x.scope))
	for _, e := range x.entries {
		fmt.Fprintf(&buf, "%d %s\n", e.Seq, strconv.Quote(e.Name))
	}
	dir := filepath.Dir(x.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("seqindex: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".seqindex-*")
	if err != nil {
		return fmt.Errorf("seqindex: write: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(buf.Bytes())
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), x.path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("seqindex: write: %w", err)
	}
	if x.f != nil {
		x.f.Close()
	}
	f, err := os.OpenFile(x.path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("seqindex: open: %w", err)
	}
	x.f = f
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Cursor versions, the first byte of every cursor: 1 without a mark
// (EncodeCursor), 2 with the mark of the item at the position (Cursor).
const (
	cursorVersion = 1
	cursorMarked  = 2
)

// EncodeCursor returns the cursor for position seq of index id: a version
// byte, the 16-byte ID, and seq as a uvarint.
func EncodeCursor(id [IDLen]byte, seq uint64) []byte {
	b := make([]byte, 0, 1+IDLen+binary.MaxVarintLen64)
	b = append(b, cursorVersion)
	b = append(b, id[:]...)
	return binary.AppendUvarint(b, seq)
}

// DecodeCursor parses a cursor made by EncodeCursor. It rejects anything
// else, trailing bytes and non-minimal varints included, so that one
// position has one encoding.
func DecodeCursor(b []byte) (id [IDLen]byte, seq uint64, err error) {
	id, seq, _, err = decodeCursor(b)
	return id, seq, err
}

// decodeCursor also returns the mark of a version 2 cursor (nil for 1).
func decodeCursor(b []byte) (id [IDLen]byte, seq uint64, mark []byte, err error) {
	if len(b) < 1 {
		return id, 0, nil, errors.New("malformed cursor: empty")
	}
	head := 1 + IDLen
	switch b[0] {
	case cursorVersion:
	case cursorMarked:
		head += markLen
	default:
		return id, 0, nil, fmt.Errorf("malformed cursor: version %d, want %d or %d", b[0], cursorVersion, cursorMarked)
	}
	if len(b) < head+1 {
		return id, 0, nil, fmt.Errorf("malformed cursor: %d bytes is too short", len(b))
	}
	copy(id[:], b[1:1+IDLen])
	if b[0] == cursorMarked {
		mark = b[1+IDLen : head]
	}
	seq, n := binary.Uvarint(b[head:])
	switch {
	case n <= 0:
		return id, 0, nil, errors.New("malformed cursor: bad sequence number")
	case head+n != len(b):
		return id, 0, nil, fmt.Errorf("malformed cursor: %d trailing bytes", len(b)-head-n)
	case n != len(binary.AppendUvarint(nil, seq)):
		return id, 0, nil, errors.New("malformed cursor: sequence number not minimally encoded")
	}
	return id, seq, mark, nil
}
