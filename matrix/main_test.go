package matrix

import (
	"os"
	"testing"

	"github.com/remora-p2p/remora/sdk/channeltest"
)

// TestMain lets channeltest.Self re-execute this test binary as the adapter
// subprocess.
func TestMain(m *testing.M) {
	channeltest.ServeIfChild(New())
	os.Exit(m.Run())
}
