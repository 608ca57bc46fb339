package node

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/api"
	"github.com/remora-p2p/remora/testenv"
)

// TestMailboxKeepsGroupMessages: a group message handed to a friend's
// mailbox travels sealed to its one recipient (the friend holds the
// sender's chain key), yet reaches the recipient's app as the group message
// it is: direct false, its sender_seq in order with the sender's other
// group messages; a direct message beside it stays direct. Before, the
// mailbox copy came as a direct message carrying a number of the group
// sequence, so the app saw one sender's messages out of order (TestChaos).
func TestMailboxKeepsGroupMessages(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four libp2p nodes")
	}
	mc := newMailboxCircle(t)
	defer mc.stopAll()
	mc.configure(nil, nil) // no channel: the mailbox is the only way
	a := mc.start("alice")
	mc.start("carol")
	mc.connected("alice", "carol")
	ctx := context.Background()
	for _, text := range []string{"group one", "group two"} {
		if _, err := a.n.Send(ctx, api.SendRequest{Circle: mc.circle, Text: text}); err != nil {
			t.Fatal(err)
		}
	}
	mc.send("alice", "bob", "just for bob", 0)
	testenv.WaitFor(t, "carol keeping the three for bob", 30*time.Second, func() bool {
		for _, text := range []string{"group one", "group two", "just for bob"} {
			if !slices.Contains(mc.holders("alice", text), "carol") {
				return false
			}
		}
		return true
	})
	mc.stop("alice")
	b := mc.start("bob")
	deadline := time.Now().Add(60 * time.Second)
	for got := texts(inbox(t, b.n)); got["group one"] == 0 || got["group two"] == 0 || got["just for bob"] == 0; got = texts(inbox(t, b.n)) {
		if time.Now().After(deadline) {
			t.Fatalf("bob's inbox after 60 s: %v, want the three from carol's mailbox", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	seq := map[string]uint64{}
	for _, m := range inbox(t, b.n) {
		seq[m.Text] = m.SenderSeq
		if wantDirect := m.Text == "just for bob"; m.Direct != wantDirect {
			t.Errorf("%q by %s: direct %v, want %v", m.Text, m.Path, m.Direct, wantDirect)
		}
		if m.Path != "mailbox:"+mc.nodes["carol"].n.ID().String() {
			t.Errorf("%q came by %s, want carol's mailbox", m.Text, m.Path)
		}
	}
	if seq["group one"] >= seq["group two"] {
		t.Errorf("sender_seq: group one %d, group two %d: want them in the order sent", seq["group one"], seq["group two"])
	}
}
