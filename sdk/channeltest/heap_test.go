package channeltest_test

import (
	"sync"
	"testing"

	"github.com/remora-p2p/remora/sdk/channeltest"
)

// TestHeapGrowthSeesPooledBuffer: a read that takes its buffer from a
// sync.Pool, where an earlier read in the same process left one (the
// kit's publisher and subscriber share a process; go-git's pack parser
// pools its object buffers), still counts the buffer, as in a fresh
// adapter process.
func TestHeapGrowthSeesPooledBuffer(t *testing.T) {
	const size = 8 << 20
	pool := sync.Pool{New: func() any { b := make([]byte, size); return &b }}
	earlier := pool.Get().(*[]byte) // the publisher's read
	(*earlier)[0] = 1
	pool.Put(earlier)
	earlier = nil

	stop := channeltest.HeapGrowth()
	buf := pool.Get().(*[]byte) // the subscriber's read
	for i := range *buf {
		(*buf)[i] = byte(i)
	}
	pool.Put(buf)
	if grew := stop(); grew < size {
		t.Errorf("the heap grew by %d KiB reading into a %d KiB buffer, want at least that: a pooled buffer from an earlier read hid it", grew>>10, size>>10)
	}
}
