package dir_test

import (
	"os"
	"testing"

	"github.com/remora-p2p/remora/dir"
	"github.com/remora-p2p/remora/sdk/channeltest"
)

func TestMain(m *testing.M) {
	// Under channeltest.Self this test binary is the adapter process.
	channeltest.ServeIfChild(dir.New())
	os.Exit(m.Run())
}
