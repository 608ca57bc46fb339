package node

import (
	"fmt"
	"testing"
	"time"

	"github.com/remora-p2p/remora/testenv"
)

// BenchmarkFriendMailbox: 1,000 direct messages to a member who is offline,
// with no channel at all, wait in a friend's mailbox; the member comes back
// and gets them from the friend. Reported: the time from the member's
// start to the last message in its inbox (goal: within 30 s), and how long
// the sender took to hand the 1,000 to the friend.
//
//	go test -run '^$' -bench BenchmarkFriendMailbox -benchtime 1x ./core/node/
func BenchmarkFriendMailbox(b *testing.B) {
	const count = 1000
	for range b.N {
		b.StopTimer()
		mc := newMailboxCircle(b)
		mc.configure(nil, map[string]int64{"carol": 64 << 20})
		mc.start("carol")
		mc.start("alice")
		mc.connected("alice", "carol")
		t0 := time.Now()
		for i := range count {
			mc.send("alice", "bob", fmt.Sprintf("message %04d", i), 0)
		}
		testenv.WaitFor(b, "alice handing every message to carol", 5*time.Minute, func() bool {
			return len(mc.chatDeposits("alice")["carol"]) == count
		})
		handed := time.Since(t0)
		mc.stop("alice")

		b.StartTimer()
		t1 := time.Now()
		bob := mc.start("bob")
		var first time.Duration
		testenv.WaitFor(b, "bob receiving every message", 5*time.Minute, func() bool {
			k := len(texts(inbox(b, bob.n)))
			if k > 0 && first == 0 {
				first = time.Since(t1)
			}
			return k == count
		})
		b.Logf("first message after %v", first)
		got := time.Since(t1)
		b.StopTimer()
		if dup := bob.n.Counters()["duplicates_removed"]; dup > 0 {
			b.Logf("%d duplicate copies removed", dup)
		}
		b.ReportMetric(got.Seconds(), "s-to-deliver-1000")
		b.ReportMetric(float64(count)/got.Seconds(), "msgs/s")
		b.ReportMetric(handed.Seconds(), "s-to-hand-over-1000")
		mc.stopAll()
	}
}
