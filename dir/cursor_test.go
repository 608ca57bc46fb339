package dir

import (
	"bytes"
	"testing"
)

func TestCursorRoundTrip(t *testing.T) {
	for _, seq := range []uint64{0, 1, 127, 128, 1 << 40, ^uint64(0)} {
		for _, c := range []cursor{{index: randomID(), seq: seq}, {index: randomID(), seq: seq, mark: markOf("2026120215/x")}} {
			got, err := decodeCursor(c.encode())
			if err != nil || got != c {
				t.Errorf("seq %d: decode(encode) = %+v, %v", seq, got, err)
			}
		}
	}
}

// FuzzDecodeCursor: the decoder never panics, and whatever it accepts is
// the one encoding of that position.
func FuzzDecodeCursor(f *testing.F) {
	f.Add(cursor{seq: 1}.encode())
	f.Add(cursor{index: randomID(), seq: 1 << 33}.encode())
	f.Add(cursor{index: randomID(), seq: 7, mark: markOf("b/n")}.encode())
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add(append(cursor{seq: 5}.encode(), 0))
	f.Add(append([]byte{1}, make([]byte, 16+10)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeCursor(b)
		if err != nil {
			return
		}
		if enc := c.encode(); !bytes.Equal(enc, b) {
			t.Fatalf("decode accepted %x, which encodes back as %x", b, enc)
		}
	})
}
