package envelope

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// device is a test member: identity, box keys (current X25519, previous
// X25519, a hybrid one) and a per-epoch message key.
type device struct {
	id      peer.ID
	sign    ed25519.PrivateKey
	box     hpke.PrivateKey // current X25519
	oldBox  hpke.PrivateKey // previous X25519
	pqBox   hpke.PrivateKey // MLKEM768-X25519
	msgKeys map[Epoch][]byte
}

// seeded derives deterministic bytes from a label.
func seeded(label string, n int) []byte {
	var out []byte
	for i := byte(0); len(out) < n; i++ {
		h := sha256.Sum256(append([]byte(label), i))
		out = append(out, h[:]...)
	}
	return out[:n]
}

func newDevice(t testing.TB, name string) *device {
	t.Helper()
	priv := ed25519.NewKeyFromSeed(seeded("identity "+name, 32))
	pub, err := crypto.UnmarshalEd25519PublicKey(priv.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	x := func(label string) hpke.PrivateKey {
		k, err := ecdh.X25519().NewPrivateKey(seeded(label+" "+name, 32))
		if err != nil {
			t.Fatal(err)
		}
		hk, err := hpke.NewDHKEMPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return hk
	}
	pq, err := hpke.MLKEM768X25519().DeriveKeyPair(seeded("pq box "+name, 64))
	if err != nil {
		t.Fatal(err)
	}
	return &device{id: id, sign: priv, box: x("box"), oldBox: x("old box"), pqBox: pq, msgKeys: map[Epoch][]byte{}}
}

func (d *device) signer() Signer              { return Signer{ID: d.id, Key: d.sign} }
func (d *device) member() Member              { return Member{ID: d.id, Key: d.sign.Public().(ed25519.PublicKey)} }
func (d *device) recipient() Recipient        { return Recipient{ID: d.id, BoxKey: d.box.PublicKey()} }
func (d *device) msgKey(e Epoch) []byte       { return d.msgKeys[e] }
func (d *device) setMsgKey(e Epoch, k []byte) { d.msgKeys[e] = k }

// view is one device's Keys: what its circle and identity packages know.
type view struct {
	self    *device
	epochs  []*EpochKeys
	members map[Epoch][]Member
	chains  map[Epoch]map[peer.ID][][]byte
	boxes   []hpke.PrivateKey
}

func (v *view) Epochs() []*EpochKeys { return v.epochs }
func (v *view) Members(c CircleID, e Epoch) []Member {
	return v.members[e]
}
func (v *view) MessageKeys(c CircleID, e Epoch, sender peer.ID) ([][]byte, bool) {
	ks, ok := v.chains[e][sender]
	return ks, ok
}
func (v *view) BoxKeys() []hpke.PrivateKey { return v.boxes }

// world is a circle of three devices (alice, bob, carol) and an outsider
// (mallory), with two epochs: old (all three) and cur (alice, bob, carol).
type world struct {
	circle            CircleID
	old, cur          *EpochKeys
	alice, bob, carol *device
	mallory           *device
	now               time.Time
}

func newWorld(t testing.TB) *world {
	t.Helper()
	w := &world{now: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	copy(w.circle[:], seeded("circle", 32))
	var eOld, eCur Epoch
	copy(eOld[:], seeded("epoch old", 32))
	copy(eCur[:], seeded("epoch cur", 32))
	var err error
	if w.old, err = NewEpochKeys(w.circle, eOld, seeded("secret old", 32)); err != nil {
		t.Fatal(err)
	}
	if w.cur, err = NewEpochKeys(w.circle, eCur, seeded("secret cur", 32)); err != nil {
		t.Fatal(err)
	}
	w.alice, w.bob, w.carol, w.mallory = newDevice(t, "alice"), newDevice(t, "bob"), newDevice(t, "carol"), newDevice(t, "mallory")
	for _, d := range []*device{w.alice, w.bob, w.carol, w.mallory} {
		d.setMsgKey(eOld, seeded("msg key old "+string(d.id), 32))
		d.setMsgKey(eCur, seeded("msg key cur "+string(d.id), 32))
	}
	return w
}

// view returns d's Keys: both epochs, the three members, everyone's chain
// keys, d's box keys.
func (w *world) view(d *device) *view {
	v := &view{
		self:    d,
		epochs:  []*EpochKeys{w.cur, w.old},
		members: map[Epoch][]Member{},
		chains:  map[Epoch]map[peer.ID][][]byte{},
		boxes:   []hpke.PrivateKey{d.box, d.oldBox, d.pqBox},
	}
	for _, e := range []*EpochKeys{w.cur, w.old} {
		v.chains[e.Epoch] = map[peer.ID][][]byte{}
		for _, m := range []*device{w.alice, w.bob, w.carol} {
			v.members[e.Epoch] = append(v.members[e.Epoch], m.member())
			v.chains[e.Epoch][m.id] = [][]byte{seeded("wrong day", 32), m.msgKey(e.Epoch)}
		}
	}
	return v
}

func (w *world) clock() func() time.Time { return func() time.Time { return w.now } }

func (w *world) opener(d *device, opts OpenOptions) *Opener {
	if opts.Now == nil {
		opts.Now = w.clock()
	}
	return NewOpener(w.view(d), d.id, opts)
}

func (w *world) draft(body []byte) Draft {
	return Draft{
		Kind:      KindChat,
		Sequence:  Sequence{Incarnation: 7, Number: 42},
		Timestamp: w.now,
		Expiry:    w.now.Add(24 * time.Hour),
		Body:      body,
	}
}

func mustEqualBody(t *testing.T, got *Message, want []byte) {
	t.Helper()
	if !bytes.Equal(got.Body, want) {
		t.Fatalf("body = %d bytes %.32x…, want %d bytes %.32x…", len(got.Body), got.Body, len(want), want)
	}
}
