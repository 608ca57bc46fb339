package channeltest

import (
	"testing"

	"github.com/remora-p2p/remora/sdk"
)

// newBackend picks in-process or subprocess mode for one case.
func newBackend(t *testing.T, a sdk.Adapter, cfg config) backend {
	return inProcess{a}
}
