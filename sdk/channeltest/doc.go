// Package channeltest is the conformance kit every remora adapter runs
// against its real backend, in the shape of Go CDK's drivertest.
//
// An adapter's test supplies a [Harness] (how to open the channel as each
// member, and optional hooks that reach around the adapter into the
// backend) and calls [Run]:
//
//	func TestConformance(t *testing.T) {
//		channeltest.Run(t, dir.New(), newHarness)
//	}
//
// Run executes one subtest per case: Capabilities, RoundTrip, Resume,
// Backdated, CursorInvalid, Idempotency, MaxPayload, Concurrent, Cancel,
// Board, Delete and Leaks. Each case checks what the channel declares in its
// Capabilities: a channel that declares strong idempotency must never
// deliver a repeated key twice, one that declares Board must implement
// sdk.Board, and so on. Cases that need a hook the harness cannot provide
// (it returns sdk.ErrUnsupported) are skipped with the reason logged.
//
// By default the kit calls the adapter in-process, which gives coverage and
// a debugger. [Subprocess] (or REMORA_ADAPTER_BIN) runs the same cases
// against the adapter binary through sdk/host, over the real wire protocol;
// [ServeIfChild] in TestMain lets the test binary itself be that binary.
package channeltest
