//go:build unix

package envelope

import (
	"syscall"
	"time"
)

// cpuTime is the process's user+system CPU time: on a loaded machine it
// measures the work an operation costs, where wall time also counts the
// time other processes held the CPU.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
