package dir

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"syscall"
)

// Everything in the folder is someone else's writing: a member's, or a
// compromised sync peer's. So dir reaches into it only through an os.Root
// (no path, and no link, leads out of the folder), refuses links where it
// finds them, opens files without blocking and checks the type of what it
// opened, and reads through a limit. A link to /dev/zero, a FIFO, a device
// node, a socket or a file that grows while it is read costs one skipped
// item, never the memory or the reader.

// errNotRegular is an item that is not a regular file.
type errNotRegular struct{ kind string }

func (e errNotRegular) Error() string { return "not a regular file but a " + e.kind }

// errTooLarge is an item larger than the limit it was read with.
type errTooLarge struct {
	size  int64
	grew  bool // it passed the limit while being read
	limit int64
}

func (e errTooLarge) Error() string {
	if e.grew {
		return fmt.Sprintf("grew past %d bytes while being read", e.limit)
	}
	return fmt.Sprintf("%d bytes, more than %d", e.size, e.limit)
}

// kindOf names a file mode's type for messages.
func kindOf(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	case m.IsDir():
		return "folder"
	}
	return "special file"
}

// readRegular reads the regular file name (slash-separated, inside r) and
// at most limit bytes of it. A link, FIFO, device, socket or folder is
// errNotRegular and a larger file errTooLarge; a file that disappeared is
// fs.ErrNotExist.
func readRegular(r *os.Root, name string, limit int64) ([]byte, fs.FileInfo, error) {
	// A link is refused where it is seen; one swapped in after this check
	// can lead only inside the folder (os.Root), and what it leads to must
	// still be a regular file.
	fi, err := r.Lstat(name)
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fi, errNotRegular{kindOf(fi.Mode())}
	}
	// Non-blocking: opening a FIFO for reading would otherwise wait for a
	// writer, for ever.
	f, err := r.OpenFile(name, os.O_RDONLY|openFlags, 0)
	if errors.Is(err, syscall.ENXIO) { // a socket swapped in
		return nil, fi, errNotRegular{"socket"}
	}
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fi, errNotRegular{kindOf(fi.Mode())}
	}
	if fi.Size() > limit {
		return nil, fi, errTooLarge{size: fi.Size(), limit: limit}
	}
	// Read what the size said, and one byte more to notice growth: a file
	// that grows while it is read is read no further than limit+1.
	buf := make([]byte, 0, fi.Size()+1)
	lr := io.LimitReader(f, limit+1)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fi, err
		}
	}
	if int64(len(buf)) > limit {
		return nil, fi, errTooLarge{size: int64(len(buf)), grew: true, limit: limit}
	}
	return buf, fi, nil
}

// openSub opens the folder's sub-folder name (log or board) as a Root of
// its own: a real folder inside the folder, never a link.
func openSub(r *os.Root, name string) (*os.Root, error) {
	fi, err := r.Lstat(name)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s/ is a %s, not a folder: %w", name, kindOf(fi.Mode()), errReplaced)
	}
	return r.OpenRoot(name)
}

// errReplaced says a folder of the layout was replaced by something else.
var errReplaced = errors.New("something replaced part of the channel's folder; remove it (dir recreates log/ and board/ when the channel is configured again)")

// writeFileIn writes data to name inside r atomically: a temporary file
// next to it, fsync, rename. The caller syncs the folder afterwards.
func writeFileIn(r *os.Root, name string, data []byte) (err error) {
	tmp, err := stageIn(r, path.Dir(name), data, true)
	if err != nil {
		return err
	}
	if err = r.Rename(tmp, name); err != nil {
		r.Remove(tmp)
	}
	return err
}

// stageIn writes data to a new temporary file in the folder dir inside r
// and returns its name (inside r); with sync it is durable.
func stageIn(r *os.Root, dir string, data []byte, sync bool) (string, error) {
	var rnd [8]byte
	rand.Read(rnd[:])
	name := path.Join(dir, tmpPrefix+hex.EncodeToString(rnd[:]))
	f, err := r.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		r.Remove(name)
		return "", err
	}
	return name, nil
}

// syncDirIn fsyncs the folder name inside r so that renames in it survive
// a crash.
func syncDirIn(r *os.Root, name string) error {
	d, err := r.Open(name)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}
