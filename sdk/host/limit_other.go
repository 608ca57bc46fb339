//go:build !linux

package host

import (
	"errors"
	"fmt"
)

var errNoLimits = errors.New("not supported on this platform")

func limitMemory(pid int, limit int64) (int64, error) {
	return 0, fmt.Errorf("host: limit the memory of pid %d: %w", pid, errNoLimits)
}

func residentBytes(pid int) (int64, error) {
	return 0, fmt.Errorf("host: memory of pid %d: %w", pid, errNoLimits)
}
