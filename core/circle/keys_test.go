package circle

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/remora-p2p/remora/core/envelope"
)

// TestRemovalRotatesKeys: after a removal every remaining member has a new
// chain key, hands it only to the remaining members, and the removed
// member's old-epoch envelopes stop being accepted; a remaining member's
// old-epoch envelopes are accepted within the grace window only.
func TestRemovalRotatesKeys(t *testing.T) {
	c := &clock{time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	g := group(t, c, 3)
	a, b, x := g[0], g[1], g[2]
	members := map[string]*Circle{string(a.Self()): a, string(b.Self()): b}
	old := a.Epoch()
	oldKey, err := b.SendKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.ReceiveKey(old, x.Self(), oldKey.Day); err != nil {
		t.Fatalf("x's key before removal: %v", err)
	}

	u, err := a.RemoveMember(x.Self())
	if err != nil {
		t.Fatal(err)
	}
	if !u.EpochChanged || u.Epoch == old {
		t.Fatal("removal did not change the epoch")
	}
	for _, o := range u.Send {
		if o.To == x.Self() {
			t.Fatalf("removed member is sent %v", o.Msg.Kind)
		}
	}
	ub, err := b.ApplyOp(u.Op.Raw())
	if err != nil {
		t.Fatal(err)
	}
	// b has not got a's contribution yet: it must not send (under either
	// epoch) and asks for it.
	if _, err := b.SendKey(); !errors.Is(err, ErrMissingSecret) {
		t.Fatalf("send without the contribution: %v", err)
	}
	if reqs := b.Requests(); len(reqs) == 0 || reqs[0].To != a.Self() || reqs[0].Msg.Kind != MsgKeyRequest {
		t.Fatalf("requests = %+v", reqs)
	}
	deliver(t, a, u.Send, members)
	deliver(t, b, ub.Send, members)
	if len(b.Requests()) != 0 || len(a.Requests()) != 0 {
		t.Fatalf("still missing keys: %+v %+v", a.Requests(), b.Requests())
	}
	newKey, err := b.SendKey()
	if err != nil {
		t.Fatal(err)
	}
	if newKey.Epoch == old || newKey.Key == oldKey.Key {
		t.Fatal("b did not rotate its sender key")
	}
	if k, err := a.ReceiveKey(newKey.Epoch, b.Self(), newKey.Day); err != nil || k != newKey.Key {
		t.Fatalf("a cannot open b's new-epoch envelopes: %v", err)
	}
	sa, _ := a.EpochSecrets()
	sb, _ := b.EpochSecrets()
	if len(sa) < 2 || sa[0].Epoch != newKey.Epoch || sa[1].Epoch != old || string(sa[0].Bytes()) != string(sb[0].Bytes()) {
		t.Fatalf("epoch secrets: %d, equal=%v", len(sa), string(sa[0].Bytes()) == string(sb[0].Bytes()))
	}

	tests := []struct {
		name   string
		after  time.Duration
		sender *Circle
		epoch  Epoch
		want   error
	}{
		{"old epoch, remaining member, in grace", time.Hour, b, old, nil},
		{"old epoch, removed member", time.Hour, x, old, ErrNotMember},
		{"new epoch, removed member", time.Hour, x, newKey.Epoch, ErrNotMember},
		{"old epoch after grace", DefaultEpochGrace + time.Hour, b, old, ErrEpochExpired},
		{"new epoch after grace", DefaultEpochGrace + time.Hour, b, newKey.Epoch, nil},
		{"unknown epoch", time.Hour, b, Epoch{1}, ErrUnknownEpoch},
	}
	base := c.t
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.t = base.Add(tt.after)
			_, err := a.ReceiveKey(tt.epoch, tt.sender.Self(), DayOf(base))
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			_, ok := a.MessageKeys(a.ID().EnvelopeID(), [32]byte(tt.epoch), tt.sender.Self())
			if ok != (tt.want == nil) {
				t.Fatalf("MessageKeys ok=%v, want %v", ok, tt.want == nil)
			}
		})
	}
	c.t = base
	// Sending always uses the newest epoch.
	if k, _ := a.SendKey(); k.Epoch != a.Epoch() {
		t.Fatal("a sends under an old epoch")
	}
}

func TestKeyRequestResend(t *testing.T) {
	c := &clock{time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	g := group(t, c, 2)
	a, b := g[0], g[1]
	// b loses a's key (say the hand-out envelope was dropped).
	b.mu.Lock()
	delete(b.chains, chainID{b.log.Roster().Epoch, a.Self()})
	b.mu.Unlock()
	sk, _ := a.SendKey()
	if _, err := b.ReceiveKey(sk.Epoch, a.Self(), sk.Day); !errors.Is(err, ErrNoSenderKey) {
		t.Fatalf("got %v, want ErrNoSenderKey", err)
	}
	reqs := b.Requests()
	if len(reqs) != 1 || reqs[0].To != a.Self() {
		t.Fatalf("requests = %+v", reqs)
	}
	deliver(t, b, reqs, map[string]*Circle{string(a.Self()): a, string(b.Self()): b})
	if k, err := b.ReceiveKey(sk.Epoch, a.Self(), sk.Day); err != nil || k != sk.Key {
		t.Fatalf("after resend: %v", err)
	}
}

func TestRatchetAndExpiry(t *testing.T) {
	c := &clock{time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	g := group(t, c, 2)
	a, b := g[0], g[1]
	day0, _ := a.SendKey()
	c.t = c.t.Add(24 * time.Hour)
	day1, _ := a.SendKey()
	if day1.Day != day0.Day+1 || day1.Key == day0.Key {
		t.Fatal("chain did not ratchet")
	}
	for _, k := range []SenderKey{day0, day1} {
		if got, err := b.ReceiveKey(k.Epoch, a.Self(), k.Day); err != nil || got != k.Key {
			t.Fatalf("day %d: %v", k.Day, err)
		}
	}
	// The sender itself keeps no earlier day.
	if _, err := a.ReceiveKey(day0.Epoch, a.Self(), day0.Day); !errors.Is(err, ErrKeyExpired) {
		t.Fatalf("sender kept yesterday's key: %v", err)
	}
	// Past the maximum age the receiver deletes it too.
	c.t = c.t.Add(DefaultMaxAge)
	b.Maintain()
	if _, err := b.ReceiveKey(day0.Epoch, a.Self(), day0.Day); !errors.Is(err, ErrKeyExpired) {
		t.Fatalf("receiver kept a key past max age: %v", err)
	}
	if _, err := b.ReceiveKey(day0.Epoch, a.Self(), DayOf(c.t)+5); !errors.Is(err, ErrKeyExpired) {
		t.Fatalf("far-future day: %v", err)
	}
}

func TestStateRoundTrip(t *testing.T) {
	c := &clock{time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	g := group(t, c, 3)
	a := g[0]
	if _, err := a.RemoveMember(g[2].Self()); err != nil {
		t.Fatal(err)
	}
	inv, err := a.NewInvite("", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	st, err := a.State()
	if err != nil {
		t.Fatal(err)
	}
	a2, err := Load(a.keys, a.Ops(), st, opts(c))
	if err != nil {
		t.Fatal(err)
	}
	k1, err1 := a.SendKey()
	k2, err2 := a2.SendKey()
	if err1 != nil || err2 != nil || k1 != k2 {
		t.Fatalf("send keys differ after reload: %v %v", err1, err2)
	}
	s1, _ := a.EpochSecrets()
	s2, _ := a2.EpochSecrets()
	if len(s1) != len(s2) || string(s1[0].Bytes()) != string(s2[0].Bytes()) {
		t.Fatal("epoch secrets differ after reload")
	}
	// The open invite survives the restart.
	req, _, err := RequestJoin(newKeyring(t, c), inv, "late", c.t)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a2.OpenJoin(req); err != nil {
		t.Fatalf("invite lost in reload: %v", err)
	}
	if _, err := Load(a.keys, a.Ops(), []byte("{"), opts(c)); err == nil {
		t.Fatal("garbage state loaded")
	}
}

func TestKeyMsgParse(t *testing.T) {
	good := []KeyMsg{
		{Kind: MsgSenderKey, Circle: ID{1}, Epoch: Epoch{2}, Day: 7, Key: [32]byte{3}},
		{Kind: MsgContribution, Circle: ID{1}, Op: Hash{4}, Key: [32]byte{5}},
		{Kind: MsgKeyRequest, Circle: ID{1}, Epoch: Epoch{6}},
		{Kind: MsgKeyRequest, Circle: ID{1}, Op: Hash{7}},
		{Kind: MsgOpRequest, Circle: ID{1}, Want: []Hash{{8}, {9}}, Have: []Hash{{10}}},
		{Kind: MsgOpRequest, Circle: ID{1}, Want: []Hash{{8}}},
	}
	for _, m := range good {
		got, err := ParseKeyMsg(m.Marshal())
		if err != nil || !reflect.DeepEqual(got, m) {
			t.Fatalf("%v: got %+v, %v", m.Kind, got, err)
		}
	}
	noWant := KeyMsg{Kind: MsgOpRequest, Circle: ID{1}, Have: []Hash{{1}}}.Marshal()
	tooMany := KeyMsg{Kind: MsgOpRequest, Circle: ID{1}, Want: make([]Hash, MaxParents+1)}.Marshal()
	for _, b := range [][]byte{nil, {1}, append(good[0].Marshal(), 0), good[1].Marshal()[:40], {2, 1},
		noWant, tooMany, good[4].Marshal()[:60], append(good[5].Marshal(), 0)} {
		if _, err := ParseKeyMsg(b); !errors.Is(err, ErrMalformedKeyMsg) {
			t.Fatalf("%x: %v", b, err)
		}
	}
}

// TestStateWritesWhatLoadReads: State writes peer IDs from the circle's
// remembered text (epochOut, chainOut); what it writes decodes, with the
// plain state type Load uses, to the circle's own epochs and chains.
func TestStateWritesWhatLoadReads(t *testing.T) {
	c := &clock{time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	g := group(t, c, 4)
	a := g[0]
	if _, err := a.RemoveMember(g[3].Self()); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second time from remembered text
		raw, err := a.State()
		if err != nil {
			t.Fatal(err)
		}
		var st state
		if err := json.Unmarshal(raw, &st); err != nil {
			t.Fatal(err)
		}
		a.mu.Lock()
		if !reflect.DeepEqual(st.Epochs, a.epochs) {
			t.Errorf("epochs written differ:\n%+v\n%+v", st.Epochs, a.epochs)
		}
		if len(st.Chains) != len(a.chains) {
			t.Errorf("%d chains written, %d held", len(st.Chains), len(a.chains))
		}
		for _, ch := range st.Chains {
			if held, ok := a.chains[chainID{ch.Epoch, ch.Owner}]; !ok || *held != ch.chain {
				t.Errorf("chain of %s in %s written wrong", ch.Owner, ch.Epoch)
			}
		}
		a.mu.Unlock()
	}
}

// TestMembersFollowsTheRoster: Members answers from a cache kept per
// (epoch, current epoch); a removal must still drop the removed member
// from the answer for the old epoch as well as for the new one.
func TestMembersFollowsTheRoster(t *testing.T) {
	c := &clock{time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	g := group(t, c, 3)
	a, x := g[0], g[2]
	id := a.ID().EnvelopeID()
	old := a.Epoch()
	has := func(ms []envelope.Member, p peer.ID) bool {
		return slices.ContainsFunc(ms, func(m envelope.Member) bool { return m.ID == p })
	}
	if ms := a.Members(id, envelope.Epoch(old)); len(ms) != 3 || !has(ms, x.Self()) {
		t.Fatalf("before the removal: %d members, x among them %v", len(ms), has(ms, x.Self()))
	}
	if _, err := a.RemoveMember(x.Self()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		epoch Epoch
	}{{"old epoch", old}, {"new epoch", a.Epoch()}} {
		t.Run(tc.name, func(t *testing.T) {
			ms := a.Members(id, envelope.Epoch(tc.epoch))
			if len(ms) != 2 || has(ms, x.Self()) {
				t.Fatalf("%d members, the removed one among them: %v", len(ms), has(ms, x.Self()))
			}
		})
	}
}
