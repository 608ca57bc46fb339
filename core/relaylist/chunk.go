package relaylist

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// A bundle travels over a board (the DNS TXT box: entries of at most a
// couple of KB) cut into chunks, entry key "rl-<i>", value
// "<id> <i> <n>\n" then the bytes; id names the bundle (its list's
// sequence), so that chunks of an older bundle still lying about are told
// apart. Republishing a bundle reuses the keys rl-0, rl-1, ...

// chunkKeyPrefix starts every chunk's entry key.
const chunkKeyPrefix = "rl-"

// MaxChunked bounds a bundle carried in chunks (DNS answers over TCP stay
// under 64 KiB; a larger list goes by URL).
const MaxChunked = 40 << 10

// ErrNoBundle: the board holds no complete bundle.
var ErrNoBundle = errors.New("relay list: no complete bundle in the entries")

// Chunks cuts a bundle into board entries of at most max bytes each.
func Chunks(bundle []byte, id uint64, max int) (map[string][]byte, error) {
	if len(bundle) > MaxChunked {
		return nil, fmt.Errorf("relay list: a bundle of %d bytes is too large to carry in chunks (at most %d): serve it by URL", len(bundle), MaxChunked)
	}
	room := max - len(fmt.Sprintf("%d %d %d\n", id, 999, 999))
	if room < 64 {
		return nil, fmt.Errorf("relay list: entries of %d bytes are too small for chunks", max)
	}
	n := (len(bundle) + room - 1) / room
	out := map[string][]byte{}
	for i := range n {
		part := bundle[i*room : min(len(bundle), (i+1)*room)]
		out[fmt.Sprintf("%s%d", chunkKeyPrefix, i)] = append(fmt.Appendf(nil, "%d %d %d\n", id, i, n), part...)
	}
	return out, nil
}

// Assemble puts back together the complete bundle with the highest id from
// board entries (other entries are ignored).
func Assemble(entries map[string][]byte) ([]byte, error) {
	type set struct {
		n     int
		parts map[int][]byte
	}
	sets := map[uint64]*set{}
	for k, v := range entries {
		if !strings.HasPrefix(k, chunkKeyPrefix) {
			continue
		}
		head, body, ok := bytes.Cut(v, []byte("\n"))
		f := strings.Fields(string(head))
		if !ok || len(f) != 3 {
			continue
		}
		id, err1 := strconv.ParseUint(f[0], 10, 64)
		i, err2 := strconv.Atoi(f[1])
		n, err3 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil || err3 != nil || n < 1 || n > 1024 || i < 0 || i >= n {
			continue
		}
		s := sets[id]
		if s == nil {
			s = &set{n: n, parts: map[int][]byte{}}
			sets[id] = s
		}
		if s.n == n {
			s.parts[i] = body
		}
	}
	var best uint64
	found := false
	for id, s := range sets {
		if len(s.parts) == s.n && (!found || id > best) {
			best, found = id, true
		}
	}
	if !found {
		return nil, ErrNoBundle
	}
	var buf bytes.Buffer
	s := sets[best]
	for i := range s.n {
		buf.Write(s.parts[i])
	}
	if buf.Len() > MaxChunked {
		return nil, fmt.Errorf("%w: %d bytes in chunks, at most %d", ErrFormat, buf.Len(), MaxChunked)
	}
	return buf.Bytes(), nil
}
