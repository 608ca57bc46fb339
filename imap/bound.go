package imap

import (
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/remora-p2p/remora/sdk"
)

// A server is hostile ground: it may stall, answer a byte at a time, or
// send a literal far larger than the RFC822.SIZE it gave. go-imap waits
// for an answer as long as the connection lives and reads a literal
// whole, so the subscription bounds both itself: every command runs
// within a deadline that closes the connection when it passes, and FETCH
// literals are read through a limit.

// minRate is the slowest download the deadline of a FETCH allows for
// beyond Timeout: 64 KiB/s.
const minRate = 64 << 10

// headerLimit bounds the header fields fetched to recognise our mail.
const headerLimit = 16 << 10

// within runs fn, one command on c, and closes c if it has not completed
// within d; the command then fails, and within says why: a server that
// stalls or trickles costs a reconnect, never a stuck subscription.
func within[T any](c *imapclient.Client, op string, d time.Duration, fn func() (T, error)) (T, error) {
	var late atomic.Bool
	t := time.AfterFunc(d, func() { late.Store(true); c.Close() })
	v, err := fn()
	if !t.Stop() && late.Load() {
		return v, &sdk.Error{Code: sdk.CodeUnavailable, Message: fmt.Sprintf(
			"imap: %s: no complete answer within %v: the server stalls or answers too slowly; reconnecting", op, d.Round(time.Millisecond))}
	}
	return v, err
}

// withinErr is within for a round of commands that returns only an error.
func withinErr(c *imapclient.Client, op string, d time.Duration, fn func() error) error {
	_, err := within(c, op, d, func() (struct{}, error) { return struct{}{}, fn() })
	return err
}

// fetchDeadline is the deadline of a FETCH expected to bring size bytes.
func (c Config) fetchDeadline(size int64) time.Duration {
	return c.Timeout.D() + time.Duration(size/minRate)*time.Second
}

// collectBounded is imapclient's FetchCommand.Collect with every literal read
// through limit: one over it closes the connection (reading it through
// would cost what the server chooses) and fails with CodeUnavailable
// naming the mail.
func (ch *channel) collectBounded(c *imapclient.Client, op string, cmd *imapclient.FetchCommand, limit int64) ([]*imapclient.FetchMessageBuffer, error) {
	defer cmd.Close()
	var out []*imapclient.FetchMessageBuffer
	for {
		msg := cmd.Next()
		if msg == nil {
			break
		}
		buf := &imapclient.FetchMessageBuffer{SeqNum: msg.SeqNum}
		for {
			item := msg.Next()
			if item == nil {
				break
			}
			switch item := item.(type) {
			case imapclient.FetchItemDataUID:
				buf.UID = item.UID
			case imapclient.FetchItemDataRFC822Size:
				buf.RFC822Size = item.Size
			case imapclient.FetchItemDataInternalDate:
				buf.InternalDate = item.Time
			case imapclient.FetchItemDataBodySection:
				var b []byte
				if item.Literal != nil {
					var err error
					b, err = io.ReadAll(io.LimitReader(item.Literal, limit+1))
					if err != nil {
						return nil, classify(op, "", err)
					}
					if int64(len(b)) > limit {
						// Hang up before cmd.Close (deferred) discards
						// the rest of the response: until the socket is
						// shut, it can read whatever the server sends, at
						// loopback speed (the likely way 34 MiB got out
						// once under load). Not c.Close here: it waits for
						// the decoder, which waits for this literal to be
						// consumed.
						if sock, ok := ch.sockets.Load(c); ok {
							sock.(net.Conn).Close()
						}
						go c.Close()
						return nil, &sdk.Error{Code: sdk.CodeUnavailable, Message: fmt.Sprintf(
							"imap: %s: the server sent more than %d bytes for mail %d (UID %d, RFC822.SIZE %d): refused; reconnecting",
							op, limit, msg.SeqNum, buf.UID, buf.RFC822Size)}
					}
				}
				buf.BodySection = append(buf.BodySection, imapclient.FetchBodySectionBuffer{Section: item.Section, Bytes: b})
			}
		}
		out = append(out, buf)
	}
	if err := cmd.Close(); err != nil {
		return nil, classify(op, "", err)
	}
	return out, nil
}
