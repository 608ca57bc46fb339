package dir

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// tmpPrefix starts the name of every temporary file dir writes. Names in
// the shared folder do not name the software (docs/threat-model.md).
const tmpPrefix = ".tmp-"

// folderIDFile holds the folder's identity.
const folderIDFile = ".folder-id"

// Names earlier versions used: a folder they made keeps its identity, and
// their temporary files are not taken for foreign ones.
const (
	legacyTmpPrefix    = ".remora-tmp-"
	legacyFolderIDFile = ".remora-folder"
)

// bucketLayout names the UTC hour buckets under log/.
const bucketLayout = "2006010215"

func bucketOf(t time.Time) string { return t.UTC().Format(bucketLayout) }

// validBucket reports whether name is an hour bucket written by dir.
func validBucket(name string) bool {
	if len(name) != len(bucketLayout) {
		return false
	}
	_, err := time.Parse(bucketLayout, name)
	return err == nil
}

// validKey reports whether s is an idempotency or board key, which dir
// uses as a file name: 1 to 64 characters of [A-Za-z0-9_-].
func validKey(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// kind classifies a directory entry.
type kind int

const (
	kindItem    kind = iota // one of ours
	kindTemp                // a temporary file, ours or a sync tool's
	kindForeign             // anything else
)

// classify tells items from temporary and foreign files by name.
func classify(name string, isDir bool) kind {
	switch {
	case strings.HasPrefix(name, tmpPrefix), strings.HasPrefix(name, legacyTmpPrefix),
		strings.HasPrefix(name, ".syncthing.") && strings.HasSuffix(name, ".tmp"), // Syncthing
		strings.HasPrefix(name, "~syncthing~"),                                    // Syncthing on Windows
		strings.HasPrefix(name, ".~lock."),                                        // LibreOffice, Nextcloud
		strings.HasSuffix(name, ".part"), strings.HasSuffix(name, ".partial"),     // Nextcloud, rsync, browsers
		strings.HasPrefix(name, ".") && strings.HasSuffix(name, ".tmp"):
		return kindTemp
	case isDir || !validKey(name):
		return kindForeign
	}
	return kindItem
}

// writeFile writes data to dir/name atomically (the state dir's files:
// nobody else writes there).
func writeFile(dir, name string, data []byte) error {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer r.Close()
	return writeFileIn(r, name, data)
}

// syncDir fsyncs a directory so that renames in it survive a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}

func randomID() [idLen]byte {
	var id [idLen]byte
	rand.Read(id[:])
	return id
}

// folderIDLimit bounds the identity file: 32 hex digits and a newline.
const folderIDLimit = 256

// folderID reads the folder's identity (inside r, the folder), creating
// it when the folder has none yet. A folder whose identity changes was
// replaced or wiped.
func folderID(r *os.Root) ([idLen]byte, error) {
	var id [idLen]byte
	b, _, err := readRegular(r, folderIDFile, folderIDLimit)
	if errors.Is(err, os.ErrNotExist) {
		if legacy, _, lerr := readRegular(r, legacyFolderIDFile, folderIDLimit); lerr == nil && decodeID(strings.TrimSpace(string(legacy)), &id) == nil {
			b, err = legacy, nil // adopted below, under the new name
			if werr := writeFileIn(r, folderIDFile, []byte(hex.EncodeToString(id[:])+"\n")); werr != nil {
				return id, fmt.Errorf("write %s: %w", folderIDFile, werr)
			}
			if werr := syncDirIn(r, "."); werr != nil {
				return id, fmt.Errorf("write %s: %w", folderIDFile, werr)
			}
		}
	}
	switch {
	case err == nil:
		if decodeID(strings.TrimSpace(string(b)), &id) == nil {
			return id, nil
		}
		// Unreadable (a torn write, an edit): start a new identity.
	case errors.As(err, new(errNotRegular)), errors.As(err, new(errTooLarge)):
		// Not ours (a link, a FIFO, a huge file): replaced below by a
		// regular file, which the rename puts in its place.
	case !errors.Is(err, os.ErrNotExist):
		return id, fmt.Errorf("read %s: %w", folderIDFile, err)
	}
	id = randomID()
	if err := writeFileIn(r, folderIDFile, []byte(hex.EncodeToString(id[:])+"\n")); err != nil {
		return id, fmt.Errorf("write %s: %w", folderIDFile, err)
	}
	if err := syncDirIn(r, "."); err != nil {
		return id, fmt.Errorf("write %s: %w", folderIDFile, err)
	}
	return id, nil
}
