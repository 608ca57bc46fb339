package mastodon_test

import (
	"os"
	"testing"

	"github.com/remora-p2p/remora/mastodon"
	"github.com/remora-p2p/remora/sdk/channeltest"
)

func TestMain(m *testing.M) {
	// Under channeltest.Subprocess this test binary is the adapter process.
	channeltest.ServeIfChild(mastodon.New())
	os.Exit(m.Run())
}
