package dir

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// indexHeader starts the index file.
const indexHeader = "remora-dir-index 1"

// entry is one indexed log file.
type entry struct {
	seq    uint64
	bucket string
	name   string
}

func (e entry) id() string { return e.bucket + "/" + e.name }

// index gives every log file a sequence number the first time the channel
// sees it. It lives in the channel's state dir as a text file:
//
//	remora-dir-index 1 <index ID hex> <folder ID hex> <next seq>
//	<seq> <bucket> <name>
//	...
//
// New entries are appended and fsynced before they are delivered; pruning
// rewrites the file atomically. An index that cannot be read starts over
// with a new ID, which invalidates the old cursors: the host then
// resubscribes from the start and dedupes, so nothing is lost.
type index struct {
	path    string // "" keeps the index in memory only
	id      [idLen]byte
	folder  [idLen]byte
	next    uint64
	entries []entry           // by seq
	have    map[string]uint64 // bucket/name → seq
	byKey   map[string]string // name → bucket
	f       *os.File          // append handle
}

// openIndex loads the index at path for the folder with identity folder,
// or starts a new one; fresh says why a new one was started ("" if not).
func openIndex(path string, folder [idLen]byte) (x *index, fresh string, err error) {
	if path == "" {
		x = newIndex("", folder)
		return x, "no state dir", nil
	}
	x, err = loadIndex(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		fresh = "new"
	case err != nil:
		fresh = err.Error()
	case x.folder != folder:
		fresh = "the folder was replaced or wiped"
	default:
		if err := x.rewrite(); err != nil { // drops a torn last line
			return nil, "", err
		}
		return x, "", nil
	}
	x = newIndex(path, folder)
	return x, fresh, x.rewrite()
}

func newIndex(path string, folder [idLen]byte) *index {
	return &index{path: path, id: randomID(), folder: folder, next: 1, have: map[string]uint64{}, byKey: map[string]string{}}
}

func loadIndex(path string) (*index, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	if !sc.Scan() {
		return nil, fmt.Errorf("index %s: empty", path)
	}
	f := strings.Fields(sc.Text())
	if len(f) != 5 || f[0]+" "+f[1] != indexHeader {
		return nil, fmt.Errorf("index %s: bad header", path)
	}
	x := &index{path: path, have: map[string]uint64{}, byKey: map[string]string{}}
	if err := decodeID(f[2], &x.id); err != nil {
		return nil, fmt.Errorf("index %s: %w", path, err)
	}
	if err := decodeID(f[3], &x.folder); err != nil {
		return nil, fmt.Errorf("index %s: %w", path, err)
	}
	if x.next, err = strconv.ParseUint(f[4], 10, 64); err != nil || x.next == 0 {
		return nil, fmt.Errorf("index %s: bad next sequence %q", path, f[4])
	}
	complete := bytes.HasSuffix(b, []byte("\n"))
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if !complete && len(lines) > 0 {
		lines = lines[:len(lines)-1] // torn append: never fsynced, never delivered
	}
	var last uint64
	for n, line := range lines {
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("index %s: line %d: want 3 fields", path, n+2)
		}
		seq, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil || seq <= last || !validBucket(f[1]) || !validKey(f[2]) {
			if err == nil && seq <= last {
				err = fmt.Errorf("sequence %d out of order", seq)
			}
			return nil, fmt.Errorf("index %s: line %d: bad entry %q: %v", path, n+2, line, err)
		}
		x.put(entry{seq: seq, bucket: f[1], name: f[2]})
		last = seq
	}
	x.next = max(x.next, last+1)
	return x, nil
}

func decodeID(s string, id *[idLen]byte) error {
	// The length first: hex.Decode panics when dst is too short.
	if len(s) != 2*idLen {
		return fmt.Errorf("bad ID %q", s)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return fmt.Errorf("bad ID %q", s)
	}
	return nil
}

func (x *index) put(e entry) {
	x.entries = append(x.entries, e)
	x.have[e.id()] = e.seq
	x.byKey[e.name] = e.bucket
}

// add gives the new files the next sequence numbers, in (bucket, name)
// order, and makes them durable before returning.
func (x *index) add(files []entry) error {
	if len(files) == 0 {
		return nil
	}
	sort.Slice(files, func(i, j int) bool {
		if files[i].bucket != files[j].bucket {
			return files[i].bucket < files[j].bucket
		}
		return files[i].name < files[j].name
	})
	var buf bytes.Buffer
	for i := range files {
		files[i].seq = x.next + uint64(i)
		fmt.Fprintf(&buf, "%d %s %s\n", files[i].seq, files[i].bucket, files[i].name)
	}
	if x.f != nil {
		if _, err := x.f.Write(buf.Bytes()); err != nil {
			return fmt.Errorf("index: append: %w", err)
		}
		if err := x.f.Sync(); err != nil {
			return fmt.Errorf("index: sync: %w", err)
		}
	}
	for _, e := range files {
		x.put(e)
	}
	x.next += uint64(len(files))
	return nil
}

// at returns the entry numbered seq, if the index still has it.
func (x *index) at(seq uint64) (entry, bool) {
	i := sort.Search(len(x.entries), func(i int) bool { return x.entries[i].seq >= seq })
	if i < len(x.entries) && x.entries[i].seq == seq {
		return x.entries[i], true
	}
	return entry{}, false
}

// after returns the entries with sequence numbers above seq.
func (x *index) after(seq uint64) []entry {
	i := sort.Search(len(x.entries), func(i int) bool { return x.entries[i].seq > seq })
	return append([]entry(nil), x.entries[i:]...)
}

// prune forgets entries in buckets before oldest.
func (x *index) prune(oldest string) error {
	keep := x.entries[:0]
	for _, e := range x.entries {
		if e.bucket >= oldest {
			keep = append(keep, e)
			continue
		}
		delete(x.have, e.id())
		if x.byKey[e.name] == e.bucket {
			delete(x.byKey, e.name)
		}
	}
	if len(keep) == len(x.entries) {
		return nil
	}
	clear(x.entries[len(keep):])
	x.entries = keep
	return x.rewrite()
}

// rewrite writes the whole index atomically and reopens it for appends.
func (x *index) rewrite() error {
	if x.path == "" {
		return nil
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "%s %x %x %d\n", indexHeader, x.id, x.folder, x.next)
	for _, e := range x.entries {
		fmt.Fprintf(&buf, "%d %s %s\n", e.seq, e.bucket, e.name)
	}
	dir, name := filepath.Split(x.path)
	if err := writeFile(dir, name, buf.Bytes()); err != nil {
		return fmt.Errorf("index: write: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("index: write: %w", err)
	}
	if x.f != nil {
		x.f.Close()
	}
	f, err := os.OpenFile(x.path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("index: open: %w", err)
	}
	x.f = f
	return nil
}

// reset starts the index over for a new folder identity.
func (x *index) reset(folder [idLen]byte) error {
	if x.f != nil {
		x.f.Close()
	}
	*x = *newIndex(x.path, folder)
	return x.rewrite()
}

func (x *index) close() error {
	if x.f == nil {
		return nil
	}
	err := x.f.Close()
	x.f = nil
	return err
}
