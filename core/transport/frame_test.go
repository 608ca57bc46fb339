package transport

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		msg  []byte
	}{
		{"empty", nil},
		{"small", []byte("hello")},
		{"two-byte varint", bytes.Repeat([]byte{1}, 300)},
		{"at limit", bytes.Repeat([]byte{2}, 4096)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := writeMsg(bufio.NewWriter(&buf), tt.msg); err != nil {
				t.Fatal(err)
			}
			got, err := readMsg(bufio.NewReader(&buf), 4096)
			if err != nil {
				t.Fatalf("readMsg: %v", err)
			}
			if !bytes.Equal(got, tt.msg) || buf.Len() != 0 {
				t.Fatalf("got %d bytes (%d left over), want %d", len(got), buf.Len(), len(tt.msg))
			}
		})
	}
}

func TestReadMsgErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"clean EOF", nil, io.EOF},
		{"over limit", []byte{0x81, 0x20}, ErrTooLarge}, // 4097
		{"huge varint", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, ErrTooLarge},
		{"truncated body", []byte{5, 'a', 'b'}, io.ErrUnexpectedEOF},
		{"truncated varint", []byte{0x80}, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readMsg(bufio.NewReader(bytes.NewReader(tt.in)), 4096)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestResponses(t *testing.T) {
	tests := []struct {
		name   string
		code   byte
		reason string
		check  func(error) bool
	}{
		{"ack", respACK, "", func(err error) bool { return err == nil }},
		{"too large", respTooLarge, "", func(err error) bool { return errors.Is(err, ErrTooLarge) }},
		{"nack", respNACK, "bad envelope", func(err error) bool {
			var re *RemoteError
			return errors.As(err, &re) && re.Reason == "bad envelope" && errors.Is(err, ErrRejected)
		}},
		{"nack truncated to 1 KiB", respNACK, strings.Repeat("x", 5000), func(err error) bool {
			var re *RemoteError
			return errors.As(err, &re) && len(re.Reason) == maxReasonLen
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := writeResponse(bufio.NewWriter(&buf), tt.code, tt.reason); err != nil {
				t.Fatal(err)
			}
			if err := readResponse(bufio.NewReader(&buf)); !tt.check(err) {
				t.Fatalf("readResponse: unexpected result %v", err)
			}
		})
	}
	bad := [][]byte{{0x07}, {respNACK, 0xff, 0x7f}, {respNACK, 10, 'a'}, {}}
	for _, in := range bad {
		if err := readResponse(bufio.NewReader(bytes.NewReader(in))); err == nil || errors.Is(err, ErrRejected) {
			t.Errorf("readResponse(%x) = %v, want a framing error", in, err)
		}
	}
}

// FuzzReadMsg: arbitrary bytes from a peer never panic, never allocate past
// the limit, and what parses survives a round trip (non-minimal varint
// lengths are accepted).
func FuzzReadMsg(f *testing.F) {
	f.Add([]byte{0})
	f.Add([]byte{5, 'h', 'e', 'l', 'l', 'o'})
	f.Add([]byte{0x81, 0x20})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, in []byte) {
		const limit = 1024
		msg, err := readMsg(bufio.NewReader(bytes.NewReader(in)), limit)
		if err != nil {
			return
		}
		if len(msg) > limit {
			t.Fatalf("read %d bytes past the %d limit", len(msg), limit)
		}
		if !bytes.Contains(in, msg) {
			t.Fatalf("message %x is not in the input", msg)
		}
		var buf bytes.Buffer
		if err := writeMsg(bufio.NewWriter(&buf), msg); err != nil {
			t.Fatal(err)
		}
		again, err := readMsg(bufio.NewReader(&buf), limit)
		if err != nil || !bytes.Equal(again, msg) {
			t.Fatalf("round trip of %x: %x, %v", msg, again, err)
		}
	})
}

// FuzzReadResponse: arbitrary responses never panic and map to exactly one
// of ACK, NACK, too large, or an error.
func FuzzReadResponse(f *testing.F) {
	f.Add([]byte{respACK})
	f.Add([]byte{respNACK, 3, 'b', 'a', 'd'})
	f.Add([]byte{respTooLarge})
	f.Add([]byte{respNACK, 0xff, 0xff, 0x03})
	f.Fuzz(func(t *testing.T, in []byte) {
		err := readResponse(bufio.NewReader(bytes.NewReader(in)))
		var re *RemoteError
		if errors.As(err, &re) && len(re.Reason) > maxReasonLen {
			t.Fatalf("reason of %d bytes accepted", len(re.Reason))
		}
		if err == nil && (len(in) == 0 || in[0] != respACK) {
			t.Fatalf("%x accepted as ACK", in)
		}
	})
}
