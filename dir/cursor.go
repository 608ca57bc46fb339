package dir

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// cursorVersion is the first byte of every cursor.
const cursorVersion = 1

// idLen is the length of index and folder IDs.
const idLen = 16

// cursor is a position in one index: deliveries resume after seq.
type cursor struct {
	index [idLen]byte
	seq   uint64
}

// encode returns the cursor as bytes: version, index ID, uvarint seq.
func (c cursor) encode() []byte {
	b := make([]byte, 0, 1+idLen+binary.MaxVarintLen64)
	b = append(b, cursorVersion)
	b = append(b, c.index[:]...)
	return binary.AppendUvarint(b, c.seq)
}

var errCursorFormat = errors.New("malformed cursor")

// decodeCursor parses a cursor made by encode. It rejects anything else,
// including trailing bytes and non-minimal varints, so that one position
// has one encoding.
func decodeCursor(b []byte) (cursor, error) {
	var c cursor
	if len(b) < 1+idLen+1 {
		return c, fmt.Errorf("%w: %d bytes is too short", errCursorFormat, len(b))
	}
	if b[0] != cursorVersion {
		return c, fmt.Errorf("%w: version %d, want %d", errCursorFormat, b[0], cursorVersion)
	}
	copy(c.index[:], b[1:1+idLen])
	seq, n := binary.Uvarint(b[1+idLen:])
	switch {
	case n <= 0:
		return c, fmt.Errorf("%w: bad sequence number", errCursorFormat)
	case 1+idLen+n != len(b):
		return c, fmt.Errorf("%w: %d trailing bytes", errCursorFormat, len(b)-1-idLen-n)
	case n != len(binary.AppendUvarint(nil, seq)):
		return c, fmt.Errorf("%w: sequence number not minimally encoded", errCursorFormat)
	}
	c.seq = seq
	return c, nil
}
