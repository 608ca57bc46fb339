//go:build !linux

package dir

import "os"

// syncFiles makes the data of paths durable, one fsync per file.
func syncFiles(dir string, paths []string) error {
	for _, p := range paths {
		f, err := os.Open(p)
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
