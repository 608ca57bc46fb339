package channeltest_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/remora-p2p/remora/sdk/channeltest"
)

// envDefect switches a defect on in the reference channel, for the child
// processes TestKitCatchesDefects starts.
const envDefect = "CHANNELTEST_MEM_DEFECT"

func newMem(t *testing.T) channeltest.Harness { return newMemHarness(t) }

// TestReference runs the kit against the correct in-memory channel (or, in
// a child of TestKitCatchesDefects, a defective one).
func TestReference(t *testing.T) {
	timeout := 20 * time.Second
	if os.Getenv(envDefect) != "" {
		timeout = 5 * time.Second // a missing item fails at the deadline
	}
	channeltest.Run(t, memAdapter{defect: os.Getenv(envDefect)}, newMem,
		channeltest.Settle(200*time.Millisecond), channeltest.Timeout(timeout))
}

// TestReferenceText runs the kit against the reference channel declared as
// a text channel: every payload the kit sends must be text.
func TestReferenceText(t *testing.T) {
	if os.Getenv(envDefect) != "" {
		t.Skip("child process")
	}
	channeltest.Run(t, memAdapter{text: true}, newMem,
		channeltest.Settle(200*time.Millisecond), channeltest.Timeout(20*time.Second))
}

// TestKitCatchesDefects proves the cases can fail: each defect, switched on
// in the reference channel, must fail exactly the case that checks it.
func TestKitCatchesDefects(t *testing.T) {
	if os.Getenv(envDefect) != "" {
		t.Skip("child process")
	}
	tests := []struct{ defect, kase, why string }{
		{"corrupt", "RoundTrip", "delivered bytes differ from the published ones"},
		{"nocursor", "RoundTrip", "deliveries without a cursor"},
		{"redeliver", "Resume", "resuming redelivers from the start"},
		{"backdated", "Backdated", "a high-water-mark cursor misses late items"},
		{"noinvalid", "CursorInvalid", "an invalidated cursor is accepted"},
		{"dupkey", "Idempotency", "declares strong idempotency, duplicates"},
		{"nolimit", "MaxPayload", "accepts oversize items"},
		{"rejectexact", "MaxPayload", "rejects an item of exactly MaxPayload"},
		{"ignorectx", "Cancel", "Subscribe ignores cancellation"},
		{"boardstale", "Board", "Put does not replace the value"},
		{"nodelete", "Delete", "Delete reports success but keeps the item"},
		{"leak", "Leaks", "Configure leaks a goroutine"},
		{"closeignored", "CloseDuringSubscribe", "Close leaves a running Subscribe running"},
		{"afterclose", "AfterClose", "calls after Close still work"},
		{"onesub", "TwoSubscribes", "a second Subscribe starves the first"},
		{"badkey", "InvalidKeys", "accepts keys that break the key rule"},
		{"readall", "Oversized", "reads a whole oversized item before it skips it"},
	}
	for _, tt := range tests {
		t.Run(tt.defect, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestReference$/^"+tt.kase+"$", "-test.v")
			cmd.Env = append(os.Environ(), envDefect+"="+tt.defect)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the kit passed a channel that %s:\n%s", tt.why, out)
			}
			if !strings.Contains(string(out), "--- FAIL: TestReference/"+tt.kase) {
				t.Fatalf("case %s did not fail for a channel that %s:\n%s", tt.kase, tt.why, out)
			}
			t.Logf("%s: caught by %s", tt.why, tt.kase)
		})
	}
}
