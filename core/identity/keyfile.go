package identity

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// PermissionError means a key file can be read by group or others. Load
// refuses such a file: the key may already have leaked, and remora will not
// keep using it silently.
type PermissionError struct {
	Path string
	Mode fs.FileMode
}

func (e *PermissionError) Error() string {
	return fmt.Sprintf("identity: key file %s has mode %04o and is readable by other users; "+
		"restrict it with `chmod 600 %s` (and consider the key exposed if others could log in)",
		e.Path, e.Mode.Perm(), e.Path)
}

// ErrInsecureKeyFile matches any *PermissionError with errors.Is.
var ErrInsecureKeyFile = errors.New("identity: key file readable by others")

// Is reports whether target is ErrInsecureKeyFile.
func (e *PermissionError) Is(target error) bool { return target == ErrInsecureKeyFile }

// readKeyFile reads path after checking that only its owner can access it.
func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, &PermissionError{Path: path, Mode: st.Mode()}
	}
	b := make([]byte, st.Size())
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, err
	}
	return b, nil
}

// writeKeyFile replaces path atomically with data, mode 0600, fsynced.
func writeKeyFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	defer os.Remove(name) // no-op after a successful rename
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(name, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
