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
// The hostile cases (hostile.go) hold every adapter to issue #20. They
// plant items through the harness's [Planter] (another client of the
// service), or InsertBackdated without one. An item
// far over MaxPayload planted on the channel (Oversized: the largest the
// service takes, down to MaxPayload+1) is never
// delivered and the reader goes on; a flood of planted items (JunkFlood)
// is read with bounded memory; with the service behind the harness's
// proxies, a service that stalls, then trickles (StallAndTrickle), makes
// no call outlive its deadline and Close return promptly. Each measures
// the adapter's memory while it reads (the heap, garbage not yet freed
// included, or the adapter process's resident memory as a subprocess),
// holds its growth under 64 MiB (Oversized: under 8 MiB, the largest item
// it plants, twice that for a process's resident memory, so an adapter
// that reads such an item whole before it skips it fails), and leaves no
// goroutine running. Special files (links to
// /dev/zero, FIFOs, files that grow while read) are the dir adapter's own
// tests (dir/hostile_test.go, cmd/remora TestHostileFolder).
//
// By default the kit calls the adapter in-process, which gives coverage and
// a debugger. [Subprocess] (or REMORA_ADAPTER_BIN) runs the same cases
// against the adapter binary through sdk/host, over the real wire protocol;
// [ServeIfChild] in TestMain lets the test binary itself be that binary.
package channeltest
