package dir

import (
	"os"

	"golang.org/x/sys/unix"
)

// syncFiles makes the data of paths (files in dir) durable. On Linux one
// syncfs(2) on the folder's filesystem does it for a whole batch: one
// journal commit instead of one per file.
func syncFiles(dir string, paths []string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return unix.Syncfs(int(d.Fd()))
}
