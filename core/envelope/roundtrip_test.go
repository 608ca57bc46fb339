package envelope

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	w := newWorld(t)
	big := seeded("big body", 5000)
	tests := []struct {
		name    string
		direct  bool
		pq      bool
		body    []byte
		maxSize int
		frags   int
	}{
		{"broadcast empty", false, false, nil, 4096, 1},
		{"broadcast 1 KiB", false, false, big[:1024], 64 << 10, 1},
		{"broadcast fragmented", false, false, big, 367, 0},
		{"direct small", true, false, []byte("hi bob"), 4096, 1},
		{"direct fragmented", true, false, big, 1000, 0},
		{"direct hybrid PQ", true, true, big[:3000], 8192, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Sealer{}
			route := Route{Channel: "matrix:!room:example.org", MaxSize: tt.maxSize}
			var sealed *Sealed
			var err error
			if tt.direct {
				to := w.bob.recipient()
				if tt.pq {
					to.BoxKey = w.bob.pqBox.PublicKey()
				}
				sealed, err = s.Direct(w.cur, w.alice.signer(), to, w.draft(tt.body), route)
			} else {
				sealed, err = s.Broadcast(w.cur, w.alice.signer(), w.alice.msgKey(w.cur.Epoch), w.draft(tt.body), route)
			}
			if err != nil {
				t.Fatal(err)
			}
			want, err := Fragments(map[bool]Suite{false: SuiteDirectX25519, true: SuiteDirectMLKEM768X25519}[tt.pq], len(tt.body), tt.maxSize)
			if !tt.direct {
				want, err = Fragments(SuiteBroadcast, len(tt.body), tt.maxSize)
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(sealed.Envelopes) != want || (tt.frags > 0 && want != tt.frags) {
				t.Fatalf("%d envelopes, Fragments says %d, want %d", len(sealed.Envelopes), want, tt.frags)
			}
			for i, env := range sealed.Envelopes {
				if len(env) > tt.maxSize {
					t.Fatalf("envelope %d is %d bytes > max %d", i, len(env), tt.maxSize)
				}
			}
			o := w.opener(w.bob, OpenOptions{})
			// Deliver in reverse order: fragments may arrive in any order.
			var msg *Message
			for i := len(sealed.Envelopes) - 1; i >= 0; i-- {
				m, err := o.Open(route.Channel, sealed.Envelopes[i])
				if i > 0 {
					var oe *OpenError
					if !isErr(err, ErrPending) || !errors.As(err, &oe) || oe.ID != sealed.ID || oe.Sender != w.alice.id {
						t.Fatalf("fragment %d: err = %v, want ErrPending naming alice's message %v", i, err, sealed.ID)
					}
					continue
				}
				if err != nil {
					t.Fatalf("open: %v", err)
				}
				msg = m
			}
			mustEqualBody(t, msg, tt.body)
			if msg.Sender != w.alice.id || msg.Kind != KindChat || msg.ID != sealed.ID ||
				msg.Sequence != (Sequence{7, 42}) || !msg.Timestamp.Equal(w.now) ||
				!msg.Expiry.Equal(w.now.Add(24*time.Hour)) || msg.Epoch != w.cur.Epoch || msg.Circle != w.circle ||
				msg.Fragments != len(sealed.Envelopes) {
				t.Fatalf("opened %+v", msg)
			}
			if tt.direct && (msg.Recipient != w.bob.id || msg.Mode != ModeDirect) {
				t.Fatalf("direct message opened as %v to %v", msg.Mode, msg.Recipient)
			}
			if !bytes.Equal(msg.DedupeKey(), DedupeKey(w.alice.id, sealed.ID)) {
				t.Fatal("dedupe key")
			}
		})
	}
}
