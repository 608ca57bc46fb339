package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Response codes of /remora/msg/1 (see the package documentation).
const (
	respACK      byte = 0x00
	respNACK     byte = 0x01
	respTooLarge byte = 0x02
)

// maxReasonLen bounds the NACK reason a receiver sends and a sender accepts.
const maxReasonLen = 1024

// writeMsg writes one request frame.
func writeMsg(w *bufio.Writer, msg []byte) error {
	var hdr [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(hdr[:], uint64(len(msg)))
	if _, err := w.Write(hdr[:n]); err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	return w.Flush()
}

// readMsgLen reads a request frame's length prefix and checks it against max.
func readMsgLen(r *bufio.Reader, max int) (int, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return 0, io.EOF
		}
		return 0, fmt.Errorf("read length: %w", err)
	}
	if n > uint64(max) {
		return 0, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, n, max)
	}
	return int(n), nil
}

// readMsg reads one request frame of at most max bytes.
func readMsg(r *bufio.Reader, max int) ([]byte, error) {
	n, err := readMsgLen(r, max)
	if err != nil {
		return nil, err
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, fmt.Errorf("read body: %w", io.ErrUnexpectedEOF)
	}
	return msg, nil
}

// writeResponse writes one response frame; reason is used only for NACK.
func writeResponse(w *bufio.Writer, code byte, reason string) error {
	if err := w.WriteByte(code); err != nil {
		return err
	}
	if code == respNACK {
		if len(reason) > maxReasonLen {
			reason = reason[:maxReasonLen]
		}
		var hdr [binary.MaxVarintLen64]byte
		n := binary.PutUvarint(hdr[:], uint64(len(reason)))
		if _, err := w.Write(hdr[:n]); err != nil {
			return err
		}
		if _, err := w.WriteString(reason); err != nil {
			return err
		}
	}
	return w.Flush()
}

// readResponse reads one response frame and turns it into the Send result:
// nil for ACK, a *RemoteError for NACK, ErrTooLarge, or a framing error.
func readResponse(r *bufio.Reader) error {
	code, err := r.ReadByte()
	if err != nil {
		return fmt.Errorf("read ack: %w", err)
	}
	switch code {
	case respACK:
		return nil
	case respTooLarge:
		return fmt.Errorf("%w: refused by the receiver", ErrTooLarge)
	case respNACK:
		n, err := binary.ReadUvarint(r)
		if err != nil {
			return fmt.Errorf("read nack: %w", err)
		}
		if n > maxReasonLen {
			return fmt.Errorf("%w: nack reason of %d bytes", errProtocol, n)
		}
		reason := make([]byte, n)
		if _, err := io.ReadFull(r, reason); err != nil {
			return fmt.Errorf("read nack: %w", io.ErrUnexpectedEOF)
		}
		return &RemoteError{Reason: string(reason)}
	default:
		return fmt.Errorf("%w: response code %#x", errProtocol, code)
	}
}
