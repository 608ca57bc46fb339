package envelope

import (
	"crypto/ed25519"
	"crypto/hpke"
	"fmt"
	"testing"
)

// loop runs op b.N times and also reports the CPU time per operation.
func loop(b *testing.B, op func()) {
	start := cpuTime()
	for b.Loop() {
		op()
	}
	if start > 0 && b.N > 0 {
		b.ReportMetric(float64(cpuTime()-start)/float64(b.N)/1e3, "cpu-µs/op")
	}
}

// benchRoute is a binary channel with room for a 1 KiB body in one envelope.
var benchRoute = Route{Channel: testChannel, MaxSize: 64 << 10}

func benchDraft(w *world) Draft { return w.draft(seeded("bench body", 1024)) }

func BenchmarkSeal(b *testing.B) {
	w := newWorld(b)
	s := &Sealer{}
	key := w.alice.msgKey(w.cur.Epoch)
	for _, mode := range []string{"broadcast", "direct"} {
		b.Run(mode+"/1KiB", func(b *testing.B) {
			d := benchDraft(w)
			var size int
			b.SetBytes(int64(len(d.Body)))
			loop(b, func() {
				var sealed *Sealed
				var err error
				if mode == "broadcast" {
					sealed, err = s.Broadcast(w.cur, w.alice.signer(), key, d, benchRoute)
				} else {
					sealed, err = s.Direct(w.cur, w.alice.signer(), w.bob.recipient(), d, benchRoute)
				}
				if err != nil {
					b.Fatal(err)
				}
				size = len(sealed.Envelopes[0])
			})
			b.ReportMetric(float64(size), "wire-bytes")
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	w := newWorld(b)
	s := &Sealer{}
	key := w.alice.msgKey(w.cur.Epoch)
	bc, err := s.Broadcast(w.cur, w.alice.signer(), key, benchDraft(w), benchRoute)
	if err != nil {
		b.Fatal(err)
	}
	dc, err := s.Direct(w.cur, w.alice.signer(), w.bob.recipient(), benchDraft(w), benchRoute)
	if err != nil {
		b.Fatal(err)
	}
	for _, members := range []int{3, 64} {
		v := w.view(w.bob)
		for i := 3; i < members; i++ {
			v.members[w.cur.Epoch] = append(v.members[w.cur.Epoch], newDevice(b, fmt.Sprint("extra", i)).member())
		}
		// The sender is listed last: the hint search goes through everyone.
		ms := v.members[w.cur.Epoch]
		ms[0], ms[len(ms)-1] = ms[len(ms)-1], ms[0]
		cases := []struct {
			name   string
			env    []byte
			self   *device
			wantOK bool
		}{
			{"broadcast", bc.Envelopes[0], w.bob, true},
			{"direct", dc.Envelopes[0], w.bob, true},
			// Every member sees the direct envelopes of others on a shared
			// channel and must try its box keys before ignoring them.
			{"direct-not-for-us", dc.Envelopes[0], w.carol, false},
		}
		for _, c := range cases {
			b.Run(fmt.Sprintf("%s/1KiB/members=%d", c.name, members), func(b *testing.B) {
				vv := *v
				vv.boxes = w.view(c.self).boxes
				o := NewOpener(&vv, c.self.id, OpenOptions{Now: w.clock()})
				b.SetBytes(1024)
				loop(b, func() {
					_, err := o.Open(testChannel, c.env)
					if (err == nil) != c.wantOK {
						b.Fatal(err)
					}
				})
			})
		}
	}
}

// TestOverheadFigures pins the wire overhead BENCHMARKS.md and
// docs/protocol.md quote.
func TestOverheadFigures(t *testing.T) {
	for _, tt := range []struct {
		suite          Suite
		perFragment    int
		singleFragment int
	}{
		{SuiteBroadcast, 90, 188},
		{SuiteDirectX25519, 122, 220},
		{SuiteDirectMLKEM768X25519, 1210, 1308},
	} {
		if Overhead(tt.suite) != tt.perFragment || MessageOverhead(tt.suite) != tt.singleFragment {
			t.Errorf("%v: overhead %d/%d, want %d/%d", tt.suite, Overhead(tt.suite), MessageOverhead(tt.suite), tt.perFragment, tt.singleFragment)
		}
	}
	w := newWorld(t)
	sealed, err := (&Sealer{}).Direct(w.cur, w.alice.signer(), w.bob.recipient(), w.draft(make([]byte, 100)), Route{Channel: "c", MaxSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(sealed.Envelopes[0]); got != 512 { // 100 + 220 → 512 bucket
		t.Fatalf("direct 100-byte body: %d wire bytes, want 512", got)
	}
}

// BenchmarkBaseline measures the primitives an envelope costs, in the same
// run, so figures from a loaded machine can be read as ratios.
func BenchmarkBaseline(b *testing.B) {
	w := newWorld(b)
	msg := seeded("bench body", 1024+FieldsSize)
	sig := ed25519.Sign(w.alice.sign, msg)
	pub := w.alice.sign.Public().(ed25519.PublicKey)
	b.Run("ed25519-sign/1KiB", func(b *testing.B) {
		loop(b, func() { ed25519.Sign(w.alice.sign, msg) })
	})
	b.Run("ed25519-verify/1KiB", func(b *testing.B) {
		loop(b, func() {
			if !ed25519.Verify(pub, msg, sig) {
				b.Fatal("verify")
			}
		})
	})
	b.Run("hpke-x25519-seal/1KiB", func(b *testing.B) {
		loop(b, func() {
			if _, err := hpke.Seal(w.bob.box.PublicKey(), hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), nil, msg); err != nil {
				b.Fatal(err)
			}
		})
	})
}
