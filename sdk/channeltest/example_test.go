package channeltest_test

import (
	"os"
	"testing"
	"time"

	"github.com/remora-p2p/remora/sdk/channeltest"
)

// An adapter's conformance test: in-process, then as a subprocess (the
// test binary re-executed as the adapter, see ServeIfChild). The harness
// constructor (here newMem) opens the channel as each member against the
// real backend.
func ExampleRun() {
	testConformance := func(t *testing.T) {
		channeltest.Run(t, memAdapter{}, newMem,
			channeltest.Timeout(3*time.Minute), // a slow service
			channeltest.Settle(2*time.Second))
	}
	testConformanceSubprocess := func(t *testing.T) {
		channeltest.Run(t, memAdapter{}, newMem, channeltest.Self())
	}
	_, _ = testConformance, testConformanceSubprocess
}

// TestMain of an adapter package that runs the kit with Self.
func ExampleServeIfChild() {
	testMain := func(m *testing.M) {
		channeltest.ServeIfChild(memAdapter{}) // returns unless re-executed by Self
		os.Exit(m.Run())
	}
	_ = testMain
}
