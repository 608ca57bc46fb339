package imap

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/emersion/go-imap/v2"

	"github.com/remora-p2p/remora/sdk"
)

// folderCursor is the position in one folder: mails with a UID below UID are
// consumed; the first Index items of mail UID were delivered.
type folderCursor struct {
	Name        string `json:"n"`
	UIDValidity uint32 `json:"v"`
	UID         uint32 `json:"u"`
	Index       int    `json:"i,omitempty"`
}

// cursor is the composite subscription cursor.
type cursor struct {
	Version int            `json:"ver"`
	Folders []folderCursor `json:"f"`
}

const cursorVersion = 1

func decodeCursor(b []byte) (cursor, error) {
	c := cursor{Version: cursorVersion}
	if len(b) == 0 {
		return c, nil
	}
	if err := json.Unmarshal(b, &c); err != nil || c.Version != cursorVersion {
		return cursor{Version: cursorVersion}, sdk.Errorf(sdk.CodeCursorInvalid, "imap: cursor is not one this adapter wrote (%d bytes); rescanning from the oldest mail", len(b))
	}
	return c, nil
}

func (c cursor) encode() []byte {
	b, _ := json.Marshal(c)
	return b
}

// folder returns the cursor of name, nil if it has none yet.
func (c *cursor) folder(name string) *folderCursor {
	for i := range c.Folders {
		if c.Folders[i].Name == name {
			return &c.Folders[i]
		}
	}
	return nil
}

// set stores fc, replacing the folder's previous position.
func (c *cursor) set(fc folderCursor) {
	if p := c.folder(fc.Name); p != nil {
		*p = fc
		return
	}
	c.Folders = append(c.Folders, fc)
}

// itemID names item index of count in a mail.
func itemID(folder string, validity uint32, uid imap.UID, index, count int) string {
	return fmt.Sprintf("%d:%d:%d:%d:%s", validity, uid, index, count, folder)
}

// parsedID is an item ID taken apart.
type parsedID struct {
	Folder       string
	UIDValidity  uint32
	UID          imap.UID
	Index, Count int
}

func parseItemID(id string) (parsedID, error) {
	parts := strings.SplitN(id, ":", 5)
	if len(parts) != 5 || parts[4] == "" {
		return parsedID{}, fmt.Errorf("imap: item ID %q is not UIDVALIDITY:UID:INDEX:COUNT:FOLDER", id)
	}
	var n [4]uint64
	for i := range 4 {
		v, err := strconv.ParseUint(parts[i], 10, 32)
		if err != nil {
			return parsedID{}, fmt.Errorf("imap: item ID %q: %w", id, err)
		}
		n[i] = v
	}
	if n[1] == 0 || n[2] >= n[3] {
		return parsedID{}, fmt.Errorf("imap: item ID %q: bad UID or index", id)
	}
	return parsedID{Folder: parts[4], UIDValidity: uint32(n[0]), UID: imap.UID(n[1]), Index: int(n[2]), Count: int(n[3])}, nil
}
