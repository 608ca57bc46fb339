package envelope

import (
	"crypto/hpke"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

const testChannel = "imap:circle@example.org"

// broadcastPlaintext decrypts a broadcast envelope with a known key.
func broadcastPlaintext(t testing.TB, key, env []byte) []byte {
	t.Helper()
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := aead.Open(nil, env[HeaderSize-NonceSize:HeaderSize], env[HeaderSize:], env[:HeaderSize])
	if err != nil {
		t.Fatal(err)
	}
	return pt
}

// rebroadcast re-encrypts a (modified) plaintext under the original header:
// what a member holding the sender's chain key can do.
func rebroadcast(t testing.TB, key, env, pt []byte) []byte {
	t.Helper()
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		t.Fatal(err)
	}
	h := env[:HeaderSize:HeaderSize]
	return aead.Seal(append([]byte(nil), h...), h[HeaderSize-NonceSize:], pt, h)
}

// sealPair seals a broadcast and a direct envelope from alice (to bob) for
// the test channel.
func sealPair(t *testing.T, w *world, broadcast, direct []byte, maxSize int) (bc, dc *Sealed) {
	t.Helper()
	s := &Sealer{}
	route := Route{Channel: testChannel, MaxSize: maxSize}
	bc, err := s.Broadcast(w.cur, w.alice.signer(), w.alice.msgKey(w.cur.Epoch), w.draft(broadcast), route)
	if err != nil {
		t.Fatal(err)
	}
	dc, err = s.Direct(w.cur, w.alice.signer(), w.bob.recipient(), w.draft(direct), route)
	if err != nil {
		t.Fatal(err)
	}
	return bc, dc
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 0x01
	return c
}

// TestTamperHeaderAndCiphertext flips every byte of a broadcast and a
// direct envelope and checks the error names the right cause.
func TestTamperHeaderAndCiphertext(t *testing.T) {
	w := newWorld(t)
	bc, dc := sealPair(t, w, []byte("broadcast body"), []byte("direct body"), 512)
	o := w.opener(w.bob, OpenOptions{})
	for _, tc := range []struct {
		name       string
		env        []byte
		ciphertext error // what a flipped byte after the header gives
	}{
		{"broadcast", bc.Envelopes[0], ErrForged},
		// HPKE cannot tell "not sealed to us" from "sealed to us and modified".
		{"direct", dc.Envelopes[0], ErrNotForUs},
	} {
		if _, err := o.Open(testChannel, tc.env); err != nil {
			t.Fatalf("%s: untouched envelope: %v", tc.name, err)
		}
		for i := range tc.env {
			var want error
			switch {
			case i == 0: // version 1→0
				want = ErrUnsupported
			case i == 1: // another suite: unknown, or too short for it, or the wrong cipher
				switch other := Suite(tc.env[1] ^ 1); {
				case other.Mode() == 0:
					want = ErrUnsupported
				case len(tc.env) < Overhead(other):
					want = ErrMalformed
				default:
					want = ErrNotForUs
				}
			case i < 2+TagSize:
				want = ErrNotForUs
			case i < 2+TagSize+HintSize:
				want = ErrNotMember
			case i < HeaderSize: // the nonce feeds the tag
				want = ErrNotForUs
			default:
				want = tc.ciphertext
			}
			_, err := o.Open(testChannel, flip(tc.env, i))
			if !isErr(err, want) {
				t.Fatalf("%s: byte %d flipped: err = %v, want %v", tc.name, i, err, want)
			}
		}
	}
}

func TestTruncateAndExtend(t *testing.T) {
	w := newWorld(t)
	bc, dc := sealPair(t, w, []byte("x"), []byte("x"), 1024)
	o := w.opener(w.bob, OpenOptions{})
	for _, tc := range []struct {
		name   string
		env    []byte
		cutErr error
	}{
		{"broadcast", bc.Envelopes[0], ErrForged},
		{"direct", dc.Envelopes[0], ErrNotForUs},
	} {
		suite := Suite(tc.env[1])
		for n := 0; n < len(tc.env); n++ {
			want := tc.cutErr
			if n < Overhead(suite) {
				want = ErrMalformed
			}
			if _, err := o.Open(testChannel, tc.env[:n]); !isErr(err, want) {
				t.Fatalf("%s truncated to %d: err = %v, want %v", tc.name, n, err, want)
			}
		}
		for _, extra := range [][]byte{{0}, []byte("trailing garbage"), make([]byte, 4096)} {
			ext := append(append([]byte(nil), tc.env...), extra...)
			if _, err := o.Open(testChannel, ext); !isErr(err, tc.cutErr) {
				t.Fatalf("%s extended by %d: err = %v, want %v", tc.name, len(extra), err, tc.cutErr)
			}
		}
	}
}

// TestTamperInside modifies the plaintext under a valid AEAD — what a
// member who holds the sender's chain key can do — and checks that the
// signature and the frame checks catch it.
func TestTamperInside(t *testing.T) {
	w := newWorld(t)
	s := &Sealer{}
	key := w.alice.msgKey(w.cur.Epoch)
	route := Route{Channel: testChannel, MaxSize: 512}
	bc, err := s.Broadcast(w.cur, w.alice.signer(), key, w.draft([]byte("pay bob 10")), route)
	if err != nil {
		t.Fatal(err)
	}
	env := bc.Envelopes[0]
	pt := broadcastPlaintext(t, key, env)
	sliceLen := int(binary.BigEndian.Uint32(pt[20:]))
	sigStart := FrameSize + sliceLen - SignatureSize
	set := func(f func(p []byte) []byte) []byte {
		return f(append([]byte(nil), pt...))
	}
	tests := []struct {
		name string
		pt   []byte
		want error
	}{
		{"signature byte", set(func(p []byte) []byte { p[sigStart+5] ^= 1; return p }), ErrForged},
		{"body byte", set(func(p []byte) []byte { p[FrameSize+FieldsSize] ^= 1; return p }), ErrForged},
		{"sequence", set(func(p []byte) []byte { p[FrameSize+15] ^= 1; return p }), ErrForged},
		{"timestamp", set(func(p []byte) []byte { p[FrameSize+23] ^= 1; return p }), ErrForged},
		{"expiry", set(func(p []byte) []byte { p[FrameSize+31] ^= 1; return p }), ErrForged},
		{"kind", set(func(p []byte) []byte { p[FrameSize+33] ^= 1; return p }), ErrForged},
		{"message ID", set(func(p []byte) []byte { p[3] ^= 1; return p }), ErrForged},
		{"count 1→2 (fragment info is signed)", set(func(p []byte) []byte { p[19] = 2; return p }), ErrPending},
		{"index ≥ count", set(func(p []byte) []byte { p[17] = 1; return p }), ErrMalformed},
		{"count 0", set(func(p []byte) []byte { p[19] = 0; return p }), ErrMalformed},
		{"slice length beyond plaintext", set(func(p []byte) []byte { binary.BigEndian.PutUint32(p[20:], uint32(len(p))); return p }), ErrMalformed},
		{"slice length huge", set(func(p []byte) []byte { binary.BigEndian.PutUint32(p[20:], 0xffffffff); return p }), ErrMalformed},
		{"slice shortened, cut byte left as padding", set(func(p []byte) []byte {
			binary.BigEndian.PutUint32(p[20:], uint32(sliceLen-1))
			// The cut byte (the signature's last) must be non-zero to be bad
			// padding; a zero one would be valid padding and a bad signature.
			p[FrameSize+sliceLen-1] |= 0x80
			return p
		}), ErrMalformed},
		{"slice shortened (signature cut)", set(func(p []byte) []byte {
			binary.BigEndian.PutUint32(p[20:], uint32(sliceLen-1))
			p[FrameSize+sliceLen-1] = 0
			return p
		}), ErrForged},
		{"slice too short to hold a signature", set(func(p []byte) []byte {
			binary.BigEndian.PutUint32(p[20:], 10)
			clear(p[FrameSize+10:])
			return p
		}), ErrMalformed},
		{"non-zero padding", set(func(p []byte) []byte { p[len(p)-1] = 1; return p }), ErrMalformed},
		{"plaintext shorter than frame", pt[:FrameSize-1], ErrMalformed},
		{"signature moved into padding", set(func(p []byte) []byte {
			binary.BigEndian.PutUint32(p[20:], uint32(sliceLen+1))
			return p
		}), ErrForged},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := w.opener(w.bob, OpenOptions{})
			_, err := o.Open(testChannel, rebroadcast(t, key, env, tt.pt))
			if !isErr(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	// The untouched plaintext, re-encrypted, still opens: the cases above
	// fail for what they change, not for the re-encryption.
	if _, err := w.opener(w.bob, OpenOptions{}).Open(testChannel, rebroadcast(t, key, env, pt)); err != nil {
		t.Fatalf("re-encrypted original: %v", err)
	}
}

func TestRejections(t *testing.T) {
	w := newWorld(t)
	body := []byte("hello circle")
	s := &Sealer{}
	route := Route{Channel: testChannel, MaxSize: 1024}
	seal := func(t *testing.T, ek *EpochKeys, from Signer, key []byte, d Draft) []byte {
		t.Helper()
		sealed, err := s.Broadcast(ek, from, key, d, route)
		if err != nil {
			t.Fatal(err)
		}
		return sealed.Envelopes[0]
	}
	var otherEpoch Epoch
	otherEpoch[0] = 9
	stranger, err := NewEpochKeys(w.circle, otherEpoch, seeded("other secret", 32))
	if err != nil {
		t.Fatal(err)
	}
	// Carol is removed: the current roster and the old epoch's accepted
	// senders no longer list her.
	withoutCarol := func(v *view) {
		for e := range v.members {
			v.members[e] = v.members[e][:2]
		}
	}
	keyNotYet := func(v *view) { delete(v.chains[w.cur.Epoch], w.alice.id) }

	tests := []struct {
		name   string
		env    func(t *testing.T) []byte
		opener func(*view)
		ch     string
		want   error
	}{
		{"wrong channel", func(t *testing.T) []byte {
			return seal(t, w.cur, w.alice.signer(), w.alice.msgKey(w.cur.Epoch), w.draft(body))
		}, nil, "imap:other@example.org", ErrNotForUs},
		{"unknown epoch", func(t *testing.T) []byte {
			return seal(t, stranger, w.alice.signer(), w.alice.msgKey(w.cur.Epoch), w.draft(body))
		}, nil, testChannel, ErrNotForUs},
		{"outsider with a leaked epoch secret", func(t *testing.T) []byte {
			return seal(t, w.cur, w.mallory.signer(), w.mallory.msgKey(w.cur.Epoch), w.draft(body))
		}, nil, testChannel, ErrNotMember},
		{"removed member, current epoch", func(t *testing.T) []byte {
			return seal(t, w.cur, w.carol.signer(), w.carol.msgKey(w.cur.Epoch), w.draft(body))
		}, withoutCarol, testChannel, ErrNotMember},
		{"removed member, old epoch in grace window", func(t *testing.T) []byte {
			return seal(t, w.old, w.carol.signer(), w.carol.msgKey(w.old.Epoch), w.draft(body))
		}, withoutCarol, testChannel, ErrNotMember},
		{"member forging another's broadcast", func(t *testing.T) []byte {
			// Carol holds alice's chain key (every member does) but signs with her own key.
			return seal(t, w.cur, Signer{ID: w.alice.id, Key: w.carol.sign}, w.alice.msgKey(w.cur.Epoch), w.draft(body))
		}, nil, testChannel, ErrForged},
		{"wrong message key", func(t *testing.T) []byte {
			return seal(t, w.cur, w.alice.signer(), seeded("not alice's key", 32), w.draft(body))
		}, nil, testChannel, ErrForged},
		{"sender key not arrived", func(t *testing.T) []byte {
			return seal(t, w.cur, w.alice.signer(), w.alice.msgKey(w.cur.Epoch), w.draft(body))
		}, keyNotYet, testChannel, ErrKeyNotYet},
		{"expired", func(t *testing.T) []byte {
			d := w.draft(body)
			d.Timestamp, d.Expiry = w.now.Add(-2*time.Hour), w.now.Add(-time.Hour)
			return seal(t, w.cur, w.alice.signer(), w.alice.msgKey(w.cur.Epoch), d)
		}, nil, testChannel, ErrExpired},
		{"older than max age", func(t *testing.T) []byte {
			d := w.draft(body)
			d.Timestamp, d.Expiry = w.now.Add(-DefaultMaxAge-time.Hour), w.now.Add(time.Hour)
			return seal(t, w.cur, w.alice.signer(), w.alice.msgKey(w.cur.Epoch), d)
		}, nil, testChannel, ErrExpired},
		{"future timestamp", func(t *testing.T) []byte {
			d := w.draft(body)
			d.Timestamp, d.Expiry = w.now.Add(DefaultMaxSkew+time.Minute), w.now.Add(time.Hour)
			return seal(t, w.cur, w.alice.signer(), w.alice.msgKey(w.cur.Epoch), d)
		}, nil, testChannel, ErrFuture},
		{"unsupported version", func(t *testing.T) []byte {
			e := seal(t, w.cur, w.alice.signer(), w.alice.msgKey(w.cur.Epoch), w.draft(body))
			e[0] = 2
			return e
		}, nil, testChannel, ErrUnsupported},
		{"unsupported suite", func(t *testing.T) []byte {
			e := seal(t, w.cur, w.alice.signer(), w.alice.msgKey(w.cur.Epoch), w.draft(body))
			e[1] = 0x7f
			return e
		}, nil, testChannel, ErrUnsupported},
		{"empty", func(t *testing.T) []byte { return nil }, nil, testChannel, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := w.view(w.bob)
			if tt.opener != nil {
				tt.opener(v)
			}
			o := NewOpener(v, w.bob.id, OpenOptions{Now: w.clock()})
			m, err := o.Open(tt.ch, tt.env(t))
			if !isErr(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if m != nil {
				t.Fatal("message returned with an error")
			}
		})
	}
}

// TestSkewTolerated: a sender clock within MaxSkew ahead is accepted.
func TestSkewTolerated(t *testing.T) {
	w := newWorld(t)
	d := w.draft([]byte("early"))
	d.Timestamp = w.now.Add(DefaultMaxSkew - time.Second)
	sealed, err := (&Sealer{}).Broadcast(w.cur, w.alice.signer(), w.alice.msgKey(w.cur.Epoch), d, Route{Channel: testChannel, MaxSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.opener(w.bob, OpenOptions{}).Open(testChannel, sealed.Envelopes[0]); err != nil {
		t.Fatal(err)
	}
}

// TestKeyNotYetThenDelivered: an envelope whose sender key has not arrived
// is reported with circle, epoch and sender, and opens once the key is there.
func TestKeyNotYetThenDelivered(t *testing.T) {
	w := newWorld(t)
	sealed, err := (&Sealer{}).Broadcast(w.cur, w.alice.signer(), w.alice.msgKey(w.cur.Epoch), w.draft([]byte("early bird")), Route{Channel: testChannel, MaxSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	v := w.view(w.bob)
	keys := v.chains[w.cur.Epoch][w.alice.id]
	delete(v.chains[w.cur.Epoch], w.alice.id)
	o := NewOpener(v, w.bob.id, OpenOptions{Now: w.clock()})
	_, err = o.Open(testChannel, sealed.Envelopes[0])
	var oe *OpenError
	if !errors.As(err, &oe) || !errors.Is(err, ErrKeyNotYet) {
		t.Fatalf("err = %v, want ErrKeyNotYet", err)
	}
	if oe.Sender != w.alice.id || oe.Epoch != w.cur.Epoch || oe.Circle != w.circle {
		t.Fatalf("OpenError names %v/%v/%v, want alice in the current epoch", oe.Circle, oe.Epoch, oe.Sender)
	}
	v.chains[w.cur.Epoch][w.alice.id] = keys
	m, err := o.Open(testChannel, sealed.Envelopes[0])
	if err != nil {
		t.Fatalf("after the key arrived: %v", err)
	}
	mustEqualBody(t, m, []byte("early bird"))
}

// TestResealedDirect: bob re-seals alice's direct message to carol. The
// signature binds recipient and box key, so carol rejects it.
func TestResealedDirect(t *testing.T) {
	w := newWorld(t)
	route := Route{Channel: testChannel, MaxSize: 1024}
	sealed, err := (&Sealer{}).Direct(w.cur, w.alice.signer(), w.bob.recipient(), w.draft([]byte("for bob only")), route)
	if err != nil {
		t.Fatal(err)
	}
	env := sealed.Envelopes[0]
	// Bob opens it properly…
	if _, err := w.opener(w.bob, OpenOptions{}).Open(testChannel, env); err != nil {
		t.Fatal(err)
	}
	// …recovers the plaintext with his box key…
	bobID := BoxKeyID(w.bob.box.PublicKey())
	r, err := hpke.NewRecipient(env[HeaderSize:HeaderSize+32], w.bob.box, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), directInfo(w.circle, bobID))
	if err != nil {
		t.Fatal(err)
	}
	pt, err := r.Open(env[:HeaderSize], env[HeaderSize+32:])
	if err != nil {
		t.Fatal(err)
	}
	// …and seals it, header and all, to carol's box key.
	carolID := BoxKeyID(w.carol.box.PublicKey())
	encap, snd, err := hpke.NewSender(w.carol.box.PublicKey(), hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), directInfo(w.circle, carolID))
	if err != nil {
		t.Fatal(err)
	}
	ct, err := snd.Seal(env[:HeaderSize], pt)
	if err != nil {
		t.Fatal(err)
	}
	resealed := append(append(append([]byte(nil), env[:HeaderSize]...), encap...), ct...)
	_, err = w.opener(w.carol, OpenOptions{}).Open(testChannel, resealed)
	if !isErr(err, ErrForged) {
		t.Fatalf("carol opening bob's re-seal: err = %v, want ErrForged", err)
	}
	// Carol cannot open the original either: it is not for her.
	if _, err := w.opener(w.carol, OpenOptions{}).Open(testChannel, env); !isErr(err, ErrNotForUs) {
		t.Fatalf("carol opening bob's envelope: err = %v, want ErrNotForUs", err)
	}
}

func TestDirectPreviousPrekey(t *testing.T) {
	w := newWorld(t)
	to := Recipient{ID: w.bob.id, BoxKey: w.bob.oldBox.PublicKey()}
	sealed, err := (&Sealer{}).Direct(w.cur, w.alice.signer(), to, w.draft([]byte("to last week's key")), Route{Channel: testChannel, MaxSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	m, err := w.opener(w.bob, OpenOptions{}).Open(testChannel, sealed.Envelopes[0])
	if err != nil {
		t.Fatal(err)
	}
	if m.BoxKey != BoxKeyID(w.bob.oldBox.PublicKey()) {
		t.Fatalf("opened with key %v, want the previous prekey", m.BoxKey)
	}
	// With the previous prekey deleted, it no longer opens.
	v := w.view(w.bob)
	v.boxes = v.boxes[:1]
	if _, err := NewOpener(v, w.bob.id, OpenOptions{Now: w.clock()}).Open(testChannel, sealed.Envelopes[0]); !isErr(err, ErrNotForUs) {
		t.Fatalf("err = %v, want ErrNotForUs", err)
	}
}

func TestReplay(t *testing.T) {
	w := newWorld(t)
	route := Route{Channel: testChannel, MaxSize: 1024}
	d := w.draft([]byte("once"))
	d.Expiry = w.now.Add(time.Hour)
	sealed, err := (&Sealer{}).Broadcast(w.cur, w.alice.signer(), w.alice.msgKey(w.cur.Epoch), d, route)
	if err != nil {
		t.Fatal(err)
	}
	// The same message sealed again for another channel has the same ID.
	d.ID = sealed.ID
	other, err := (&Sealer{}).Broadcast(w.cur, w.alice.signer(), w.alice.msgKey(w.cur.Epoch), d, Route{Channel: "matrix:!r", MaxSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	win := NewWindow(0, w.clock())
	o := w.opener(w.bob, OpenOptions{Replay: win})
	m, err := o.Open(testChannel, sealed.Envelopes[0])
	if err != nil {
		t.Fatal(err)
	}
	if want := w.now.Add(time.Hour + DefaultMaxSkew); !m.DedupeUntil.Equal(want) {
		t.Fatalf("DedupeUntil = %v, want expiry + skew = %v", m.DedupeUntil, want)
	}
	if _, err := o.Open(testChannel, sealed.Envelopes[0]); !isErr(err, ErrReplay) {
		t.Fatalf("second open: err = %v, want ErrReplay", err)
	}
	if _, err := o.Open("matrix:!r", other.Envelopes[0]); !isErr(err, ErrReplay) {
		t.Fatalf("copy from another channel: err = %v, want ErrReplay", err)
	}
	// Once the window has forgotten it, the timestamp check rejects it.
	w.now = m.DedupeUntil.Add(time.Millisecond)
	if _, err := o.Open(testChannel, sealed.Envelopes[0]); !isErr(err, ErrExpired) {
		t.Fatalf("after the window: err = %v, want ErrExpired", err)
	}
	if win.Len() != 0 {
		t.Fatalf("window still holds %d entries", win.Len())
	}
}

func TestUnknownKindOpens(t *testing.T) {
	w := newWorld(t)
	d := w.draft([]byte("from the future"))
	d.Kind = 0xbeef
	sealed, err := (&Sealer{}).Broadcast(w.cur, w.alice.signer(), w.alice.msgKey(w.cur.Epoch), d, Route{Channel: testChannel, MaxSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	m, err := w.opener(w.bob, OpenOptions{}).Open(testChannel, sealed.Envelopes[0])
	if err != nil || m.Kind != 0xbeef {
		t.Fatalf("m = %v, err = %v", m, err)
	}
}

// TestBadKeysDoNotPanic: a Keys implementation returning nil or malformed
// entries makes envelopes fail to open, not crash the node.
func TestBadKeysDoNotPanic(t *testing.T) {
	w := newWorld(t)
	route := Route{Channel: testChannel, MaxSize: 1024}
	bc, err := (&Sealer{}).Broadcast(w.cur, w.alice.signer(), w.alice.msgKey(w.cur.Epoch), w.draft([]byte("x")), route)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := (&Sealer{}).Direct(w.cur, w.alice.signer(), w.bob.recipient(), w.draft([]byte("x")), route)
	if err != nil {
		t.Fatal(err)
	}
	v := w.view(w.bob)
	v.epochs = append([]*EpochKeys{nil, {}}, v.epochs...)
	for e := range v.members {
		v.members[e] = append([]Member{{}, {ID: w.alice.id, Key: []byte{1, 2}}}, v.members[e]...)
	}
	v.chains[w.cur.Epoch][w.alice.id] = [][]byte{nil, {1}, w.alice.msgKey(w.cur.Epoch)}
	v.boxes = append([]hpke.PrivateKey{nil}, v.boxes...)
	o := NewOpener(v, w.bob.id, OpenOptions{Now: w.clock()})
	for _, env := range [][]byte{bc.Envelopes[0], dc.Envelopes[0]} {
		if _, err := o.Open(testChannel, env); err != nil {
			t.Fatalf("valid envelope next to bad keys: %v", err)
		}
	}
	if _, err := (&Sealer{}).Broadcast(&EpochKeys{}, w.alice.signer(), w.alice.msgKey(w.cur.Epoch), w.draft(nil), route); err == nil {
		t.Fatal("sealed under EpochKeys not made by NewEpochKeys")
	}
}
