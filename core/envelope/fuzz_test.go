package envelope

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/cryptotest"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the seed corpora in testdata/fuzz")

// detRand is a deterministic reader for Sealer.Rand in tests.
func detRand(seed string) *rand.ChaCha8 {
	var s [32]byte
	copy(s[:], seeded(seed, 32))
	return rand.NewChaCha8(s)
}

// openSeeds are envelopes Bob can open (or hold), sealed deterministically.
func openSeeds(t testing.TB, w *world) map[string][]byte {
	t.Helper()
	s := &Sealer{Rand: detRand("fuzz seeds")}
	out := map[string][]byte{}
	small := Route{Channel: testChannel, MaxSize: 512}
	frag := Route{Channel: testChannel, MaxSize: 200}
	bc, err := s.Broadcast(w.cur, w.alice.signer(), w.alice.msgKey(w.cur.Epoch), w.draft([]byte("hello")), small)
	if err != nil {
		t.Fatal(err)
	}
	out["broadcast"] = bc.Envelopes[0]
	dc, err := s.Direct(w.cur, w.alice.signer(), w.bob.recipient(), w.draft([]byte("hi bob")), small)
	if err != nil {
		t.Fatal(err)
	}
	out["direct"] = dc.Envelopes[0]
	fr, err := s.Broadcast(w.cur, w.carol.signer(), w.carol.msgKey(w.cur.Epoch), w.draft(seeded("fragmented", 200)), frag)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range fr.Envelopes {
		out[fmt.Sprintf("fragment-%d-of-%d", i, len(fr.Envelopes))] = e
	}
	old, err := s.Broadcast(w.old, w.carol.signer(), w.carol.msgKey(w.old.Epoch), w.draft([]byte("old epoch")), small)
	if err != nil {
		t.Fatal(err)
	}
	out["old-epoch"] = old.Envelopes[0]
	out["garbage"] = []byte("not an envelope at all")
	return out
}

func corpusFile(vals ...any) []byte {
	var b bytes.Buffer
	b.WriteString("go test fuzz v1\n")
	for _, v := range vals {
		switch v := v.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		case string:
			fmt.Fprintf(&b, "string(%q)\n", v)
		case uint16:
			fmt.Fprintf(&b, "uint16(%d)\n", v)
		}
	}
	return b.Bytes()
}

// TestWriteFuzzSeeds regenerates testdata/fuzz with -update-seeds; without
// it, it checks that the committed seeds still open, so they stay useful.
func TestWriteFuzzSeeds(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1) // HPKE's ephemeral keys
	w := newWorld(t)
	seeds := openSeeds(t, w)
	if *updateSeeds {
		write := func(target, name string, data []byte) {
			dir := filepath.Join("testdata", "fuzz", target)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		for name, env := range seeds {
			write("FuzzOpen", name, corpusFile(env))
		}
		a := NewArmor("mailto:circle@example.org")
		write("FuzzDearmor", "mail", corpusFile("Hi,\r\n"+a.Encode(seeds["broadcast"])+"\r\nbye", seeds["direct"], uint16(7)))
		write("FuzzDearmor", "plain", corpusFile("no blocks here", []byte{1, 2, 3}, uint16(0)))
		write("FuzzReassemble", "three", corpusFile([]byte{0, 0, 3, 2, 'a', 'b', 0, 2, 3, 1, 'c', 0, 1, 3, 1, 'd'}))
		write("FuzzReassemble", "conflict", corpusFile([]byte{1, 0, 2, 1, 'a', 1, 0, 3, 1, 'b', 2, 5, 2, 0}))
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzOpen")
	files, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	o := w.opener(w.bob, OpenOptions{})
	opened := 0
	for _, f := range files {
		if strings.HasPrefix(f.Name(), "garbage") {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		var env []byte
		line := strings.TrimSpace(strings.SplitN(string(raw), "\n", 2)[1])
		if _, err := fmt.Sscanf(strings.TrimSuffix(strings.TrimPrefix(line, "[]byte("), ")"), "%q", &env); err != nil {
			t.Fatalf("%s: %v", f.Name(), err)
		}
		if _, err := o.Open(testChannel, env); err == nil {
			opened++
		} else if !errors.Is(err, ErrPending) {
			t.Errorf("seed %s no longer opens: %v (regenerate with -update-seeds)", f.Name(), err)
		}
	}
	if opened < 4 {
		t.Fatalf("only %d seeds opened to a message", opened)
	}
}

var openSentinels = []error{ErrMalformed, ErrUnsupported, ErrNotForUs, ErrNotMember, ErrKeyNotYet,
	ErrForged, ErrExpired, ErrFuture, ErrReplay, ErrPending, ErrTooLarge}

func FuzzOpen(f *testing.F) {
	w := newWorld(f)
	for _, env := range openSeeds(f, w) {
		f.Add(env)
	}
	o := w.opener(w.bob, OpenOptions{Replay: NewWindow(1024, w.clock())})
	members := map[string]bool{string(w.alice.id): true, string(w.bob.id): true, string(w.carol.id): true}
	f.Fuzz(func(t *testing.T, raw []byte) {
		orig := append([]byte(nil), raw...)
		m, err := o.Open(testChannel, raw)
		if !bytes.Equal(orig, raw) {
			t.Fatal("Open modified its input")
		}
		if err != nil {
			var oe *OpenError
			if !errors.As(err, &oe) || m != nil {
				t.Fatalf("err = %#v, m = %v", err, m)
			}
			known := false
			for _, s := range openSentinels {
				known = known || errors.Is(err, s)
			}
			if !known {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		if !members[string(m.Sender)] || m.Circle != w.circle {
			t.Fatalf("opened a message from %v in circle %v", m.Sender, m.Circle)
		}
		if m.Timestamp.After(w.now.Add(DefaultMaxSkew)) || w.now.After(m.Expiry.Add(DefaultMaxSkew)) {
			t.Fatalf("accepted a message outside its time window: %v–%v", m.Timestamp, m.Expiry)
		}
	})
}

// FuzzReassemble feeds operations (key, index, count, length, data) and
// checks the limits hold and completed messages are the first-arrived
// slices in index order.
func FuzzReassemble(f *testing.F) {
	f.Add([]byte{0, 0, 2, 1, 'x', 0, 1, 2, 1, 'y'})
	f.Fuzz(func(t *testing.T, ops []byte) {
		lim := Limits{MaxFragments: 8, MaxMessageBytes: 64, MaxPending: 3, MaxPendingBytes: 100}
		r := NewReassembler(lim, nil)
		model := map[string]map[int][]byte{}
		for len(ops) >= 4 {
			key := string(rune('a' + ops[0]%4))
			index, count, n := int(int8(ops[1])), int(ops[2]%10), int(ops[3])
			ops = ops[4:]
			n = min(n, len(ops))
			data := ops[:n]
			ops = ops[n:]
			whole, done, err := r.Add(key, index, count, data)
			if m, bytes := r.Pending(); m > lim.MaxPending || bytes > lim.MaxPendingBytes {
				t.Fatalf("pending %d messages %d bytes over the limits", m, bytes)
			}
			if err != nil {
				if done || whole != nil {
					t.Fatal("result with an error")
				}
				delete(model, key)
				continue
			}
			if count == 1 {
				if !done || string(whole) != string(data) {
					t.Fatal("single fragment not passed through")
				}
				continue
			}
			if model[key] == nil {
				model[key] = map[int][]byte{}
			}
			if _, dup := model[key][index]; !dup {
				model[key][index] = append([]byte(nil), data...)
			}
			if done {
				if len(whole) > lim.MaxMessageBytes {
					t.Fatalf("completed message of %d bytes", len(whole))
				}
				// Eviction may have restarted the message: only check what
				// the model can vouch for.
				var want []byte
				complete := len(model[key]) == count
				for i := 0; i < count && complete; i++ {
					want = append(want, model[key][i]...)
				}
				if complete && string(want) != string(whole) {
					t.Fatalf("reassembled %q, want %q", whole, want)
				}
				delete(model, key)
			}
		}
	})
}

// FuzzDearmor: Find never panics, and an armored envelope wrapped anywhere
// after its mark and embedded in text with no block of the channel is found.
func FuzzDearmor(f *testing.F) {
	a := NewArmor("mailto:circle@example.org")
	f.Add("see AQE.", []byte{1}, uint16(3))
	f.Fuzz(func(t *testing.T, text string, env []byte, wrapAt uint16) {
		for _, b := range a.Find(text) {
			if len(b) <= cloakedBytes || b[0] != Version {
				t.Fatalf("Find returned %d bytes not shaped like an item", len(b))
			}
		}
		clean := withoutMarks(a, text)
		if len(env) <= cloakedBytes {
			env = append(env, make([]byte, cloakedBytes+1-len(env))...)
		}
		env[0] = Version
		block := a.Encode(env)
		if at := ArmorMarkChars + 1 + int(wrapAt)%len(block); at < len(block) {
			block = block[:at] + "\r\n" + block[at:]
		}
		found := a.Find(clean + " " + block + " " + clean)
		if len(found) != 1 || !bytes.Equal(found[0], env) {
			t.Fatalf("embedded envelope not found (found %d blocks)", len(found))
		}
	})
}

// withoutMarks breaks every word of text that starts with a valid mark of
// a, so that nothing in it starts a block.
func withoutMarks(a Armor, text string) string {
	b := []byte(text)
	tagger := hmac.New(sha256.New, a.key[:])
	var mark [armorMarkSize]byte
	for i := range b {
		if isB64(b[i]) && (i == 0 || !isB64(b[i-1])) && i+ArmorMarkChars <= len(b) && a.markValid(tagger, string(b[i:i+ArmorMarkChars]), &mark) {
			b[i] = '#'
		}
	}
	return string(b)
}

// FuzzOpenPlaintext reaches past the AEAD: it encrypts the fuzzed bytes as a
// member holding alice's chain key could, so that frame parsing,
// reassembly, verification and field parsing see arbitrary plaintexts.
// Nothing may open unless it is one of alice's signed messages.
func FuzzOpenPlaintext(f *testing.F) {
	w := newWorld(f)
	key := w.alice.msgKey(w.cur.Epoch)
	s := &Sealer{Rand: detRand("plaintext seeds")}
	for _, body := range [][]byte{nil, []byte("hello"), seeded("frag", 400)} {
		sealed, err := s.Broadcast(w.cur, w.alice.signer(), key, w.draft(body), Route{Channel: testChannel, MaxSize: 256})
		if err != nil {
			f.Fatal(err)
		}
		for _, env := range sealed.Envelopes {
			f.Add(broadcastPlaintext(f, key, env))
		}
	}
	header, err := s.Broadcast(w.cur, w.alice.signer(), key, w.draft(nil), Route{Channel: testChannel, MaxSize: 256})
	if err != nil {
		f.Fatal(err)
	}
	env0 := header.Envelopes[0]
	o := w.opener(w.bob, OpenOptions{Reassembly: Limits{MaxPending: 16, MaxPendingBytes: 1 << 16}})
	f.Fuzz(func(t *testing.T, pt []byte) {
		m, err := o.Open(testChannel, rebroadcast(t, key, env0, pt))
		if err == nil && m.Sender != w.alice.id {
			t.Fatalf("opened as %v", m.Sender)
		}
		if err != nil && m != nil {
			t.Fatal("message with an error")
		}
	})
}
