package dir

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// Cursor versions, the first byte of every cursor. Version 2 adds the mark
// of the file at the position; version 1 cursors are still read.
const (
	cursorV1      = 1
	cursorVersion = 2
)

// markLen is the length of a file's mark in a cursor.
const markLen = 8

// idLen is the length of index and folder IDs.
const idLen = 16

// cursor is a position in one index: deliveries resume after seq. mark
// names the file at seq, so that a cursor from an index that was later
// restored from an older copy (which numbers new files again from an
// earlier seq) is recognised: the file at its seq is another one. A zero
// mark (version 1) is not checked.
type cursor struct {
	index [idLen]byte
	seq   uint64
	mark  [markLen]byte
}

// markOf returns the mark of the file with entry ID id.
func markOf(id string) (m [markLen]byte) {
	h := sha256.Sum256([]byte(id))
	copy(m[:], h[:])
	return m
}

// encode returns the cursor as bytes: version, index ID, mark, uvarint seq
// (version 1, without the mark, when the mark is zero).
func (c cursor) encode() []byte {
	b := make([]byte, 0, 1+idLen+markLen+binary.MaxVarintLen64)
	if c.mark == ([markLen]byte{}) {
		b = append(b, cursorV1)
		b = append(b, c.index[:]...)
	} else {
		b = append(b, cursorVersion)
		b = append(b, c.index[:]...)
		b = append(b, c.mark[:]...)
	}
	return binary.AppendUvarint(b, c.seq)
}

var errCursorFormat = errors.New("malformed cursor")

// decodeCursor parses a cursor made by encode. It rejects anything else,
// including trailing bytes and non-minimal varints, so that one position
// has one encoding.
func decodeCursor(b []byte) (cursor, error) {
	var c cursor
	if len(b) < 1 {
		return c, fmt.Errorf("%w: empty", errCursorFormat)
	}
	head := 1 + idLen
	switch b[0] {
	case cursorV1:
	case cursorVersion:
		head += markLen
	default:
		return c, fmt.Errorf("%w: version %d, want %d", errCursorFormat, b[0], cursorVersion)
	}
	if len(b) < head+1 {
		return c, fmt.Errorf("%w: %d bytes is too short", errCursorFormat, len(b))
	}
	copy(c.index[:], b[1:1+idLen])
	if b[0] == cursorVersion {
		copy(c.mark[:], b[1+idLen:head])
		if c.mark == ([markLen]byte{}) {
			return c, fmt.Errorf("%w: zero mark", errCursorFormat)
		}
	}
	seq, n := binary.Uvarint(b[head:])
	switch {
	case n <= 0:
		return c, fmt.Errorf("%w: bad sequence number", errCursorFormat)
	case head+n != len(b):
		return c, fmt.Errorf("%w: %d trailing bytes", errCursorFormat, len(b)-head-n)
	case n != len(binary.AppendUvarint(nil, seq)):
		return c, fmt.Errorf("%w: sequence number not minimally encoded", errCursorFormat)
	}
	c.seq = seq
	return c, nil
}
