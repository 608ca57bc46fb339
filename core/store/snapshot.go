package store

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// RestoreSnapshot writes a snapshot made by WriteTo (taken from a backup) to
// path, mode 0600, fsynced. It refuses to overwrite an existing store. Open
// the result with Open.
func RestoreSnapshot(path string, r io.Reader) error {
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("store: restore: %s already exists; move it away first", path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("store: restore: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".restore-*")
	if err != nil {
		return fmt.Errorf("store: restore: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("store: restore: %w", err)
	}
	if _, err := io.Copy(tmp, r); err != nil {
		tmp.Close()
		return fmt.Errorf("store: restore: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("store: restore: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("store: restore: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("store: restore: %w", err)
	}
	return nil
}
