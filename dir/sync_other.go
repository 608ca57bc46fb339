//go:build !linux

package dir

import "os"

// syncFiles makes the data of the files names (inside r) durable, one
// fsync per file.
func syncFiles(r *os.Root, dir string, names []string) error {
	for _, p := range names {
		f, err := r.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}
