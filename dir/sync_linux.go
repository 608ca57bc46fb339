package dir

import (
	"os"

	"golang.org/x/sys/unix"
)

// syncFiles makes the data of the files names (inside r, in its folder
// dir) durable. On Linux one syncfs(2) on the folder's filesystem does it
// for a whole batch: one journal commit instead of one per file.
func syncFiles(r *os.Root, dir string, names []string) error {
	d, err := r.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return unix.Syncfs(int(d.Fd()))
}
