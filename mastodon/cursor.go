package mastodon

import (
	"encoding/json"
	"fmt"

	"github.com/remora-p2p/remora/sdk"
)

// window is how many recent notifications the cursor remembers: resuming
// re-reads from the oldest of them and skips those it holds.
const window = 32

// cursor is the subscription position: the account it belongs to, the
// highest notification ID delivered, and the last notifications delivered
// or skipped (notification ID, status ID), oldest first.
type cursor struct {
	V       int         `json:"v"`
	Account string      `json:"a"`
	Max     string      `json:"n,omitempty"`
	Recent  [][2]string `json:"w,omitempty"`
}

func decodeCursor(b []byte, account string) (cursor, error) {
	c := cursor{V: 1, Account: account}
	if len(b) == 0 {
		return c, nil
	}
	if err := json.Unmarshal(b, &c); err != nil || c.V != 1 {
		return c, sdk.Errorf(sdk.CodeCursorInvalid, "mastodon: cursor is not one this adapter wrote")
	}
	if c.Account != account {
		return c, sdk.Errorf(sdk.CodeCursorInvalid, "mastodon: cursor belongs to account %s, this channel is %s", c.Account, account)
	}
	for _, r := range c.Recent {
		if !validID(r[0]) || (r[1] != "" && !validID(r[1])) {
			return c, sdk.Errorf(sdk.CodeCursorInvalid, "mastodon: cursor holds a malformed ID %q", r[0])
		}
	}
	if c.Max != "" && !validID(c.Max) {
		return c, sdk.Errorf(sdk.CodeCursorInvalid, "mastodon: cursor holds a malformed ID %q", c.Max)
	}
	return c, nil
}

func (c *cursor) encode() []byte {
	b, err := json.Marshal(c)
	if err != nil {
		panic(fmt.Sprintf("mastodon: cursor: %v", err))
	}
	return b
}

// seen reports whether notification n or status s is in the window.
func (c *cursor) seen(n, s string) bool {
	for _, r := range c.Recent {
		if r[0] == n || (s != "" && r[1] == s) {
			return true
		}
	}
	return false
}

// add records notification n (status s) as handled.
func (c *cursor) add(n, s string) {
	c.Recent = append(c.Recent, [2]string{n, s})
	if len(c.Recent) > window {
		c.Recent = append(c.Recent[:0:0], c.Recent[len(c.Recent)-window:]...)
	}
	if c.Max == "" || idLess(c.Max, n) {
		c.Max = n
	}
}

// from is the notification ID to read after on resume: the oldest in the
// window, so the overlap is re-read.
func (c *cursor) from() string {
	from := c.Max
	for _, r := range c.Recent {
		if idLess(r[0], from) {
			from = r[0]
		}
	}
	return from
}

// idLess orders IDs as servers do: Mastodon's are decimal numbers,
// GoToSocial's fixed-length ULIDs; both sort by length, then bytes.
func idLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

func validID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}
