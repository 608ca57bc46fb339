package pex

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestPickSentForget(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	g := New(clk.now)
	to, a, b := peer.ID("to"), peer.ID("a"), peer.ID("b")
	own := &Record{Subject: "self", Seq: 1, Signed: []byte("self1")}
	held := []Record{{Subject: b, Seq: 3, Signed: []byte("b3")}, {Subject: a, Seq: 5, Signed: []byte("a5")}, {Subject: to, Seq: 9, Signed: []byte("to9")}}
	got := g.Pick(to, own, held, true)
	if len(got) != 3 || got[0].Subject != "self" || got[1].Subject != a || got[2].Subject != b {
		t.Fatalf("first exchange %v: want own, a, b (never to's own)", got)
	}
	g.Sent(to, got)
	if got := g.Pick(to, own, held, true); len(got) != 0 {
		t.Fatalf("nothing changed, yet %v is due", got)
	}
	// A fresher record of a is due, but not before MinGap.
	held[1].Seq, held[1].Signed = 6, []byte("a6")
	clk.t = clk.t.Add(MinGap / 2)
	if got := g.Pick(to, own, held, false); got != nil {
		t.Fatalf("within MinGap: %v", got)
	}
	clk.t = clk.t.Add(MinGap)
	if got := g.Pick(to, own, held, false); len(got) != 1 || got[0].Seq != 6 {
		t.Fatalf("after MinGap: %v, want a6 only", got)
	}
	g.Forget(to)
	if got := g.Pick(to, own, held, false); len(got) != 3 {
		t.Fatalf("after Forget: %v, want everything again", got)
	}
}

func TestBounds(t *testing.T) {
	g := New(nil)
	var held []Record
	for i := range MaxRecords + 10 {
		held = append(held, Record{Subject: peer.ID(fmt.Sprintf("p%03d", i)), Seq: 1, Signed: []byte("x")})
	}
	if got := g.Pick("to", nil, held, true); len(got) != MaxRecords {
		t.Fatalf("%d records, want %d", len(got), MaxRecords)
	}
	big := []Record{{Subject: "a", Seq: 1, Signed: make([]byte, MaxBody/2)}, {Subject: "b", Seq: 1, Signed: make([]byte, MaxBody/2)}}
	if got := g.Pick("to", nil, big, true); len(got) != 1 {
		t.Fatalf("%d records, want 1 under MaxBody", len(got))
	}
}

func TestEncodeDecode(t *testing.T) {
	recs := []Record{{Signed: []byte("one")}, {Signed: bytes.Repeat([]byte{7}, 300)}}
	got, err := Decode(Encode(recs))
	if err != nil || len(got) != 2 || string(got[0]) != "one" || len(got[1]) != 300 {
		t.Fatalf("round trip: %v, %v", got, err)
	}
	for _, bad := range [][]byte{{0x05, 'a'}, {0x00}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, make([]byte, MaxBody+1)} {
		if _, err := Decode(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("Decode(%x...): %v, want ErrMalformed", bad[:min(len(bad), 8)], err)
		}
	}
	var many []Record
	for range MaxRecords + 1 {
		many = append(many, Record{Signed: []byte("r")})
	}
	if _, err := Decode(Encode(many)); !errors.Is(err, ErrMalformed) {
		t.Errorf("%d records: %v, want ErrMalformed", len(many), err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode([]Record{{Signed: []byte("one")}, {Signed: []byte("two")}}))
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := Decode(b)
		if err != nil {
			return
		}
		var again []Record
		for _, r := range recs {
			if len(r) == 0 {
				t.Fatal("empty record accepted")
			}
			again = append(again, Record{Signed: r})
		}
		if !bytes.Equal(Encode(again), b) {
			t.Fatal("decode/encode is not the identity")
		}
	})
}

// TestEveryRecordGetsItsTurn: in a circle of more than MaxRecords members
// whose records are all renewed between exchanges, every member's record
// still reaches the recipient within a few exchanges. Before each exchange
// started from the first subject, so the same 64 filled every one and the
// others were never sent.
func TestEveryRecordGetsItsTurn(t *testing.T) {
	for _, members := range []int{MaxRecords + 1, 150, 3 * MaxRecords} {
		t.Run(fmt.Sprint(members), func(t *testing.T) {
			clk := &clock{t: time.Unix(1_800_000_000, 0)}
			g := New(clk.now)
			to := peer.ID("to")
			got := map[peer.ID]bool{}
			rounds := (members+MaxRecords-1)/MaxRecords + 1
			for round := range rounds {
				held := make([]Record, members)
				for i := range held {
					seq := uint64(round + 1) // every record renewed since the last exchange
					held[i] = Record{Subject: peer.ID(fmt.Sprintf("m%03d", i)), Seq: seq, Signed: []byte(fmt.Sprintf("m%03d/%d", i, seq))}
				}
				recs := g.Pick(to, nil, held, true)
				g.Sent(to, recs)
				for _, r := range recs {
					got[r.Subject] = true
				}
			}
			if len(got) != members {
				t.Fatalf("after %d exchanges %d of %d members' records were sent", rounds, len(got), members)
			}
		})
	}
}
