package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"aead.dev/minisign"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/remora-p2p/remora/core/envelope"
	"github.com/remora-p2p/remora/core/relaylist"
)

// TestRelayListFromMember: a list a member shares is taken only when it
// verifies and is newer; a forged one is refused (the box says why), an
// older one is refused without failing the box, and what was taken outlives
// a restart.
func TestRelayListFromMember(t *testing.T) {
	rootPub, rootPriv, _ := minisign.GenerateKey(rand.Reader)
	sigPub, sigPriv, _ := minisign.GenerateKey(rand.Reader)
	d, ds := relaylist.Delegate(rootPriv, sigPub, time.Now().Add(time.Hour))
	sign := func(seq uint64) []byte {
		return relaylist.Sign(&relaylist.List{Seq: seq, Expires: time.Now().Add(time.Hour), Relays: []relaylist.Relay{
			{Peer: "12D3KooWQ4u5vYSmUtGhDxWyJMPdJSMCc7Nt5xD1hrn4gPy6zQ6B", Health: 1, Addrs: []ma.Multiaddr{ma.StringCast("/ip4/198.51.100.1/tcp/4001")}}}},
			sigPriv, d, ds)
	}
	tune := func(o *Options) {
		o.Boxes.RelayList.Roots = []minisign.PublicKey{rootPub}
		o.Boxes.RelayList.After = time.Hour
	}
	a := startDirNodesTuned(t, t.TempDir(), tune, "alice")[0]
	from := a.n.ID() // any sender: the list's own signature is what counts
	box := func() (detail, err string) {
		bs, _ := a.n.Boxes(context.Background())
		for _, b := range bs {
			if b.Name == boxRelayList {
				return b.Detail, b.Error
			}
		}
		return "", ""
	}
	// the built-in list is signed under the real root, not this test's
	deadline := time.Now().Add(30 * time.Second)
	for _, err := box(); !strings.Contains(err, "another root") && time.Now().Before(deadline); _, err = box() {
		time.Sleep(20 * time.Millisecond)
	}
	forged := bytes.Replace(sign(9), []byte(",1.000\n"), []byte(",0.100\n"), 1)
	a.n.handleRelayList(&envelope.Message{Sender: from, Body: forged})
	if _, err := box(); !strings.Contains(err, "signature does not verify") || a.n.relays.Load() != nil {
		t.Fatalf("forged list: box error %q, list %v", err, a.n.relays.Load())
	}
	a.n.handleRelayList(&envelope.Message{Sender: from, Body: sign(5)})
	if l := a.n.relays.Load(); l == nil || l.Seq != 5 {
		t.Fatalf("newer list not taken: %v", l)
	}
	if detail, err := box(); !strings.Contains(detail, "list seq 5 from member "+from.String()) || err != "" {
		t.Fatalf("after taking list 5: detail %q, error %q", detail, err)
	}
	a.n.handleRelayList(&envelope.Message{Sender: from, Body: sign(4)})
	a.n.handleRelayList(&envelope.Message{Sender: from, Body: make([]byte, maxSharedList+1)})
	if l := a.n.relays.Load(); l.Seq != 5 {
		t.Fatalf("list %d in use after an older one came", l.Seq)
	}
	c := a.n.Counters()
	if c["dropped_relay_list_older"] != 1 || c["dropped_relay_list"] != 2 {
		t.Fatalf("counters %v", c)
	}
	if _, err := box(); err != "" {
		t.Fatalf("an older list from a member failed the box: %q", err)
	}
	a.stop()
	a.start()
	defer a.stop()
	deadline = time.Now().Add(30 * time.Second)
	for a.n.relays.Load() == nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if l := a.n.relays.Load(); l == nil || l.Seq != 5 {
		t.Fatalf("after a restart: %v", l)
	}
	a.n.handleRelayList(&envelope.Message{Sender: from, Body: sign(4)})
	if l := a.n.relays.Load(); l.Seq != 5 || a.n.Counters()["dropped_relay_list_older"] != 1 {
		t.Fatalf("after a restart an older list replaced list 5 (%d) or was not refused", l.Seq)
	}
}
