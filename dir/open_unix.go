//go:build unix

package dir

import "syscall"

// openFlags open an item without blocking on a FIFO and without making a
// terminal device the controlling terminal.
const openFlags = syscall.O_NONBLOCK | syscall.O_NOCTTY
