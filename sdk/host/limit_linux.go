package host

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// limitMemory caps pid's data segment (heap, private mappings, thread
// stacks) at what it holds now plus limit bytes, and returns the cap.
// RLIMIT_DATA rather than RLIMIT_AS: a Go process reserves far more
// address space than it uses (an idle adapter: 1.9 GB of address space,
// 150 MB of data, 35 MB resident). What it holds at the handshake is
// added because that is fixed cost, not content: a binary built with the
// race detector maps terabytes of shadow memory at start.
func limitMemory(pid int, limit int64) (int64, error) {
	held, err := statusBytes(pid, "VmData")
	if err != nil {
		return 0, fmt.Errorf("host: limit the memory of pid %d: %w", pid, err)
	}
	max := uint64(held + limit)
	rl := unix.Rlimit{Cur: max, Max: max}
	if err := unix.Prlimit(pid, unix.RLIMIT_DATA, &rl, nil); err != nil {
		return 0, fmt.Errorf("host: limit the memory of pid %d: %w", pid, err)
	}
	return int64(max), nil
}

// statusBytes reads a kB field of /proc/PID/status.
func statusBytes(pid int, field string) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field+":" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// residentBytes reads pid's resident set size from /proc.
func residentBytes(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0, fmt.Errorf("host: memory of pid %d: %w", pid, err)
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, fmt.Errorf("host: memory of pid %d: statm %q", pid, b)
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("host: memory of pid %d: %w", pid, err)
	}
	return pages * int64(os.Getpagesize()), nil
}
