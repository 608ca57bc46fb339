package envelope

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/cryptotest"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

var updateVectors = flag.Bool("update-vectors", false, "rewrite testdata/vectors.json")

type hexBytes []byte

func (h hexBytes) MarshalJSON() ([]byte, error) { return json.Marshal(hex.EncodeToString(h)) }
func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	d, err := hex.DecodeString(s)
	*h = d
	return err
}

type vectorFragment struct {
	Nonce      hexBytes `json:"nonce"`
	RoutingTag hexBytes `json:"routing_tag"`
	SenderHint hexBytes `json:"sender_hint"`
	HPKEEnc    hexBytes `json:"hpke_enc,omitempty"`
	// HPKEEphemeral is the ephemeral X25519 private key HPKE drew (direct
	// X25519 only), so that sealing can be reproduced, not only opening.
	HPKEEphemeral hexBytes `json:"hpke_ephemeral_private,omitempty"`
	Plaintext     hexBytes `json:"plaintext"`
	Envelope      hexBytes `json:"envelope"`
	// CloakMask is XORed into the envelope's first two bytes on the
	// channel; ArmorMark starts its armored block (protocol.md §8).
	CloakMask hexBytes `json:"cloak_mask"`
	ArmorMark hexBytes `json:"armor_mark"`
	Armored   string   `json:"armored"`
}

type vector struct {
	Name        string   `json:"name"`
	Suite       Suite    `json:"suite"`
	CircleID    hexBytes `json:"circle_id"`
	Epoch       hexBytes `json:"epoch"`
	EpochSecret hexBytes `json:"epoch_secret"`
	TagKey      hexBytes `json:"tag_key"`
	HintKey     hexBytes `json:"hint_key"`
	Channel     string   `json:"channel"`
	MaxSize     int      `json:"max_size"`
	ChannelKey  hexBytes `json:"channel_key"`

	SenderSeed   hexBytes `json:"sender_ed25519_seed"`
	SenderPublic hexBytes `json:"sender_ed25519_public"`
	SenderPeerID hexBytes `json:"sender_peer_id"`
	MessageKey   hexBytes `json:"message_key,omitempty"`

	RecipientPeerID hexBytes `json:"recipient_peer_id,omitempty"`
	// RecipientBoxKey is the serialized HPKE private key (RFC 9180
	// SerializePrivateKey; for MLKEM768-X25519 the 32-byte seed).
	RecipientBoxKey    hexBytes `json:"recipient_box_private,omitempty"`
	RecipientBoxPublic hexBytes `json:"recipient_box_public,omitempty"`
	RecipientKeyID     hexBytes `json:"recipient_key_id,omitempty"`
	HPKEInfo           hexBytes `json:"hpke_info,omitempty"`
	GoCryptotestSeed   uint64   `json:"go_cryptotest_seed,omitempty"`

	MessageID   hexBytes `json:"message_id"`
	Kind        Kind     `json:"kind"`
	Incarnation uint64   `json:"incarnation"`
	Sequence    uint64   `json:"sequence"`
	TimestampMS int64    `json:"timestamp_ms"`
	ExpiryMS    int64    `json:"expiry_ms"`
	Body        hexBytes `json:"body"`

	SignedMessage  hexBytes         `json:"signed_message"`
	SignatureInput hexBytes         `json:"signature_input"`
	Signature      hexBytes         `json:"signature"`
	Fragments      []vectorFragment `json:"fragments"`
}

type vectorFile struct {
	Comment string   `json:"comment"`
	Vectors []vector `json:"vectors"`
}

const vectorsPath = "testdata/vectors.json"

func peerIDOf(t testing.TB, pub ed25519.PublicKey) peer.ID {
	k, err := crypto.UnmarshalEd25519PublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPublicKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// vectorInputs makes the inputs of the vectors (all derived from labels).
func vectorInputs(t testing.TB) []vector {
	base := func(name string, suite Suite, body []byte, maxSize int) vector {
		seed := seeded("vector sender", 32)
		v := vector{
			Name: name, Suite: suite,
			CircleID: seeded("vector circle", 32), Epoch: seeded("vector epoch", 32), EpochSecret: seeded("vector epoch secret", 32),
			Channel: "mailto:circle@example.org", MaxSize: maxSize,
			SenderSeed: seed, MessageID: seeded("vector message id "+name, 16),
			Kind: KindChat, Incarnation: 0x0102030405060708, Sequence: 42,
			TimestampMS: 1764072000000, ExpiryMS: 1764072000000 + 7*24*3600*1000,
			Body: body,
		}
		pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
		v.SenderPublic = hexBytes(pub)
		v.SenderPeerID = hexBytes(peerIDOf(t, pub))
		return v
	}
	bc := base("broadcast", SuiteBroadcast, []byte("Hello, circle!"), 1024)
	bc.MessageKey = seeded("vector message key", 32)
	frag := base("broadcast-fragmented", SuiteBroadcast, seeded("vector long body", 300), 200)
	frag.MessageKey = bc.MessageKey
	direct := base("direct-x25519", SuiteDirectX25519, []byte("Hello, Bob."), 1024)
	rcptPub := ed25519.NewKeyFromSeed(seeded("vector recipient", 32)).Public().(ed25519.PublicKey)
	direct.RecipientPeerID = hexBytes(peerIDOf(t, rcptPub))
	direct.RecipientBoxKey = seeded("vector recipient box key", 32)
	direct.GoCryptotestSeed = 20261125
	pq := base("direct-mlkem768x25519", SuiteDirectMLKEM768X25519, []byte("Hello, Bob, after Q-day."), 4096)
	pq.RecipientPeerID = direct.RecipientPeerID
	pq.RecipientBoxKey = seeded("vector recipient hybrid box key", 32)
	pq.GoCryptotestSeed = 20261126
	return []vector{bc, frag, direct, pq}
}

func (v *vector) boxKey(t testing.TB) hpke.PrivateKey {
	var k hpke.PrivateKey
	var err error
	switch v.Suite {
	case SuiteDirectX25519:
		k, err = hpke.DHKEM(ecdh.X25519()).NewPrivateKey(v.RecipientBoxKey)
	case SuiteDirectMLKEM768X25519:
		k, err = hpke.MLKEM768X25519().NewPrivateKey(v.RecipientBoxKey)
	}
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (v *vector) epochKeys(t testing.TB) *EpochKeys {
	ek, err := NewEpochKeys(CircleID(v.CircleID), Epoch(v.Epoch), v.EpochSecret)
	if err != nil {
		t.Fatal(err)
	}
	return ek
}

// seal seals the vector's message with its deterministic inputs; rnd
// supplies the nonces.
func (v *vector) seal(t testing.TB, rnd io.Reader) *Sealed {
	ek := v.epochKeys(t)
	from := Signer{ID: peer.ID(v.SenderPeerID), Key: ed25519.NewKeyFromSeed(v.SenderSeed)}
	d := Draft{Kind: v.Kind, ID: MessageID(v.MessageID), Sequence: Sequence{v.Incarnation, v.Sequence},
		Timestamp: time.UnixMilli(v.TimestampMS), Expiry: time.UnixMilli(v.ExpiryMS), Body: v.Body}
	r := Route{Channel: v.Channel, MaxSize: v.MaxSize}
	s := &Sealer{Rand: rnd}
	var sealed *Sealed
	var err error
	if v.Suite == SuiteBroadcast {
		sealed, err = s.Broadcast(ek, from, v.MessageKey, d, r)
	} else {
		sealed, err = s.Direct(ek, from, Recipient{ID: peer.ID(v.RecipientPeerID), BoxKey: v.boxKey(t).PublicKey()}, d, r)
	}
	if err != nil {
		t.Fatal(err)
	}
	return sealed
}

func generateVectors(t *testing.T) vectorFile {
	vf := vectorFile{Comment: "remora envelope test vectors; docs/protocol.md explains every field. Generated by go test ./core/envelope -run TestVectors -update-vectors."}
	for _, v := range vectorInputs(t) {
		ek := v.epochKeys(t)
		v.TagKey, v.HintKey = ek.tag, ek.hint
		var keyID KeyID
		var rcpt peer.ID
		if v.Suite.Mode() == ModeDirect {
			bk := v.boxKey(t)
			v.RecipientBoxPublic = bk.PublicKey().Bytes()
			keyID = BoxKeyID(bk.PublicKey())
			v.RecipientKeyID = keyID[:]
			v.HPKEInfo = directInfo(ek.Circle, keyID)
			rcpt = peer.ID(v.RecipientPeerID)
		}
		n, err := Fragments(v.Suite, len(v.Body), v.MaxSize)
		if err != nil {
			t.Fatal(err)
		}
		nonces := seeded("vector nonces "+v.Name, NonceSize*n)
		if v.GoCryptotestSeed != 0 {
			cryptotest.SetGlobalRandom(t, v.GoCryptotestSeed)
		}
		var ephemeral []byte
		if v.Suite == SuiteDirectX25519 {
			// The ephemeral key HPKE will draw is the next 32 bytes of the
			// deterministic source; verified against the encapsulation below.
			ephemeral = make([]byte, 32)
			io.ReadFull(rand.Reader, ephemeral)
			cryptotest.SetGlobalRandom(t, v.GoCryptotestSeed)
		}
		sealed := v.seal(t, bytes.NewReader(nonces))
		m := appendFields(nil, Sequence{v.Incarnation, v.Sequence}, time.UnixMilli(v.TimestampMS), time.UnixMilli(v.ExpiryMS), v.Kind)
		v.SignedMessage = append(m, v.Body...)
		v.SignatureInput = signatureInput(v.Suite, ek.Circle, ek.Epoch, rcpt, keyID, peer.ID(v.SenderPeerID), MessageID(v.MessageID), uint16(n), v.SignedMessage)
		v.Signature = ed25519.Sign(ed25519.NewKeyFromSeed(v.SenderSeed), v.SignatureInput)
		a := NewArmor(v.Channel)
		key := a.Key()
		v.ChannelKey = key[:]
		for i, env := range sealed.Envelopes {
			nonce := env[HeaderSize-NonceSize : HeaderSize]
			f := vectorFragment{Nonce: nonce, RoutingTag: env[2 : 2+TagSize], SenderHint: env[2+TagSize : 2+TagSize+HintSize], Envelope: env,
				CloakMask: key.cloakMask(env), ArmorMark: a.mark(key.Cloak(env)), Armored: a.Encode(env)}
			switch v.Suite {
			case SuiteBroadcast:
				f.Plaintext = broadcastPlaintext(t, v.MessageKey, env)
			default:
				_, encSize := kemOf(v.Suite)
				f.HPKEEnc = env[HeaderSize : HeaderSize+encSize]
				r, err := hpke.NewRecipient(f.HPKEEnc, v.boxKey(t), hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), v.HPKEInfo)
				if err != nil {
					t.Fatal(err)
				}
				if f.Plaintext, err = r.Open(env[:HeaderSize], env[HeaderSize+encSize:]); err != nil {
					t.Fatal(err)
				}
				if i == 0 && ephemeral != nil {
					priv, err := ecdh.X25519().NewPrivateKey(ephemeral)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(priv.PublicKey().Bytes(), f.HPKEEnc) {
						t.Fatal("HPKE did not draw the predicted ephemeral key; drop hpke_ephemeral_private from the vectors")
					}
					f.HPKEEphemeral = ephemeral
				}
			}
			v.Fragments = append(v.Fragments, f)
		}
		vf.Vectors = append(vf.Vectors, v)
	}
	return vf
}

// vectorKeys is the receiver's view for one vector.
type vectorKeys struct {
	v  *vector
	ek *EpochKeys
	t  testing.TB
}

func (k vectorKeys) Epochs() []*EpochKeys { return []*EpochKeys{k.ek} }
func (k vectorKeys) Members(CircleID, Epoch) []Member {
	return []Member{{ID: peer.ID(k.v.SenderPeerID), Key: ed25519.PublicKey(k.v.SenderPublic)}}
}
func (k vectorKeys) MessageKeys(CircleID, Epoch, peer.ID) ([][]byte, bool) {
	return [][]byte{k.v.MessageKey}, k.v.MessageKey != nil
}
func (k vectorKeys) BoxKeys() []hpke.PrivateKey {
	if k.v.RecipientBoxKey == nil {
		return nil
	}
	return []hpke.PrivateKey{k.v.boxKey(k.t)}
}

// TestVectors checks testdata/vectors.json: every envelope opens to the
// recorded message, every intermediate value recomputes, sealing with the
// recorded randomness reproduces the envelopes byte for byte, and
// docs/protocol.md prints the same bytes.
func TestVectors(t *testing.T) {
	if *updateVectors {
		vf := generateVectors(t)
		b, err := json.MarshalIndent(vf, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(vectorsPath, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatal(err)
	}
	var vf vectorFile
	if err := json.Unmarshal(raw, &vf); err != nil {
		t.Fatal(err)
	}
	if len(vf.Vectors) < 4 {
		t.Fatalf("%d vectors", len(vf.Vectors))
	}
	doc, docErr := os.ReadFile(filepath.Join("..", "..", "docs", "protocol.md"))
	flatDoc := strings.Join(strings.Fields(string(doc)), "")
	for _, v := range vf.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			ek := v.epochKeys(t)
			if !bytes.Equal(ek.tag, v.TagKey) || !bytes.Equal(ek.hint, v.HintKey) {
				t.Fatal("tag or hint key differs")
			}
			var keyID KeyID
			var rcpt peer.ID
			if v.Suite.Mode() == ModeDirect {
				keyID = BoxKeyID(v.boxKey(t).PublicKey())
				rcpt = peer.ID(v.RecipientPeerID)
				if !bytes.Equal(keyID[:], v.RecipientKeyID) || !bytes.Equal(directInfo(ek.Circle, keyID), v.HPKEInfo) {
					t.Fatal("key ID or HPKE info differs")
				}
			}
			in := signatureInput(v.Suite, ek.Circle, ek.Epoch, rcpt, keyID, peer.ID(v.SenderPeerID), MessageID(v.MessageID), uint16(len(v.Fragments)), v.SignedMessage)
			if !bytes.Equal(in, v.SignatureInput) || !ed25519.Verify(ed25519.PublicKey(v.SenderPublic), in, v.Signature) {
				t.Fatal("signature input or signature differs")
			}
			o := NewOpener(vectorKeys{&v, ek, t}, rcpt, OpenOptions{Now: func() time.Time { return time.UnixMilli(v.TimestampMS) }})
			var m *Message
			var err error
			a := NewArmor(v.Channel)
			if key := a.Key(); !bytes.Equal(key[:], v.ChannelKey) {
				t.Fatal("channel key differs")
			}
			for i, f := range v.Fragments {
				if got := ek.routingTag(v.Channel, f.Nonce); !bytes.Equal(got, f.RoutingTag) {
					t.Fatalf("fragment %d: routing tag differs", i)
				}
				if got := ek.senderHint(peer.ID(v.SenderPeerID), f.Nonce); !bytes.Equal(got, f.SenderHint) {
					t.Fatalf("fragment %d: sender hint differs", i)
				}
				if found := a.Find(f.Armored); len(found) != 1 || !bytes.Equal(found[0], f.Envelope) {
					t.Fatalf("fragment %d: armor does not decode to the envelope", i)
				}
				cloaked := a.Key().Cloak(f.Envelope)
				if !bytes.Equal(a.Key().cloakMask(f.Envelope), f.CloakMask) || cloaked[0] != f.Envelope[0]^f.CloakMask[0] || cloaked[1] != f.Envelope[1]^f.CloakMask[1] ||
					!bytes.Equal(a.mark(cloaked), f.ArmorMark) || a.Encode(f.Envelope) != f.Armored {
					t.Fatalf("fragment %d: cloak mask, armor mark or armored text differs", i)
				}
				if len(f.Envelope) != PaddedSize(len(f.Envelope), v.MaxSize) {
					t.Fatalf("fragment %d: %d bytes is not a padding bucket", i, len(f.Envelope))
				}
				m, err = o.Open(v.Channel, f.Envelope)
				if i < len(v.Fragments)-1 && !isErr(err, ErrPending) {
					t.Fatalf("fragment %d: %v", i, err)
				}
			}
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			if !bytes.Equal(m.Body, v.Body) || m.ID != MessageID(v.MessageID) || m.Kind != v.Kind ||
				m.Sequence != (Sequence{v.Incarnation, v.Sequence}) || m.Timestamp.UnixMilli() != v.TimestampMS || m.Expiry.UnixMilli() != v.ExpiryMS {
				t.Fatalf("opened %+v", m)
			}
			// Sealing again with the recorded randomness gives the same bytes.
			var nonces []byte
			for _, f := range v.Fragments {
				nonces = append(nonces, f.Nonce...)
			}
			if v.GoCryptotestSeed != 0 {
				cryptotest.SetGlobalRandom(t, v.GoCryptotestSeed)
			}
			if v.Suite == SuiteDirectX25519 {
				io.ReadFull(rand.Reader, make([]byte, 32)) // the ephemeral key, as generated
				cryptotest.SetGlobalRandom(t, v.GoCryptotestSeed)
				if !bytes.Equal(v.Fragments[0].HPKEEphemeral, nil) {
					priv, err := ecdh.X25519().NewPrivateKey(v.Fragments[0].HPKEEphemeral)
					if err != nil || !bytes.Equal(priv.PublicKey().Bytes(), v.Fragments[0].HPKEEnc) {
						t.Fatal("hpke_ephemeral_private does not match hpke_enc")
					}
				}
			}
			sealed := v.seal(t, bytes.NewReader(nonces))
			for i, env := range sealed.Envelopes {
				if !bytes.Equal(env, v.Fragments[i].Envelope) {
					t.Fatalf("fragment %d: re-sealed envelope differs", i)
				}
			}
			// docs/protocol.md prints the single-fragment vectors in full.
			if len(v.Fragments) == 1 && v.Suite != SuiteDirectMLKEM768X25519 {
				if docErr != nil {
					t.Fatalf("docs/protocol.md: %v", docErr)
				}
				if !strings.Contains(flatDoc, hex.EncodeToString(v.Fragments[0].Envelope)) {
					t.Fatalf("docs/protocol.md does not print the %s envelope", v.Name)
				}
				if !strings.Contains(flatDoc, v.Fragments[0].Armored) {
					t.Fatalf("docs/protocol.md does not print the %s envelope armored", v.Name)
				}
			}
		})
	}
}
