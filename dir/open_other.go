//go:build !unix

package dir

// openFlags: no FIFOs or controlling terminals to guard against here.
const openFlags = 0
