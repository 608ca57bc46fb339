package envelope

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

func testEnvelope(n int) []byte {
	env := seeded("armor env", n)
	env[0] = Version
	return env
}

func TestArmorFind(t *testing.T) {
	a := NewArmor("mailto:circle@example.org")
	e1, e2, short := testEnvelope(300), testEnvelope(HeaderSize), testEnvelope(13)
	e2[5] ^= 0xff
	b1, b2 := a.Encode(e1), a.Encode(e2)
	wrap := func(s string, width int, sep string) string {
		var out strings.Builder
		for len(s) > width {
			out.WriteString(s[:width] + sep)
			s = s[width:]
		}
		out.WriteString(s)
		return out.String()
	}
	tests := []struct {
		name string
		text string
		want [][]byte
	}{
		{"bare", b1, [][]byte{e1}},
		{"in a mail", "Hi,\r\n\r\nsee below.\r\n" + b1 + "\r\n-- \r\nsig\r\n", [][]byte{e1}},
		{"wrapped CRLF", "x\r\n" + wrap(b1, 76, "\r\n") + "\r\n", [][]byte{e1}},
		{"format=flowed soft breaks", wrap(b1, 70, " \r\n"), [][]byte{e1}},
		{"quoted reply", "> " + wrap(b1, 60, "\n> ") + "\n", [][]byte{e1}},
		{"two blocks, text between", "first " + b1 + " and then " + b2 + " done", [][]byte{e1, e2}},
		{"adjacent blocks", b1 + b2, [][]byte{e1, e2}},
		{"text right after the dot", b1 + "Cheers", [][]byte{e1}},
		{"html paragraph", "<p>" + b1 + "</p>", [][]byte{e1}},
		{"a short item (the last part of a join frame)", "see " + a.Encode(short), [][]byte{short}},
		{"mark inside a word is not a block", "x" + b1, nil},
		{"mark cut by a space", b1[:4] + " " + b1[4:], nil},
		{"cut short (no dot)", strings.TrimSuffix(b1, "."), nil},
		{"foreign character inside", b1[:40] + "!" + b1[40:], nil},
		{"another channel's block", NewArmor("mailto:other@example.org").Encode(e1), nil},
		{"a mark altered", flipChar(b1, 2), nil},
		{"not an envelope of this version", a.Encode([]byte{9, 1, 2, 3}), nil},
		{"broken block then a good one", b1[:40] + "# " + b2, [][]byte{e2}},
		{"empty", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := a.Find(tt.text)
			if len(got) != len(tt.want) {
				t.Fatalf("found %d blocks, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if !bytes.Equal(got[i], tt.want[i]) {
					t.Fatalf("block %d differs", i)
				}
			}
		})
	}
}

func TestArmorSizes(t *testing.T) {
	a := NewArmor("rm0-")
	for _, maxChars := range []int{0, 5, 6, 7, 100, 500, 501, 502, 503, 65536} {
		n := a.MaxEnvelope(maxChars)
		if n > 0 && a.Len(n) > maxChars {
			t.Fatalf("MaxEnvelope(%d) = %d, armored %d chars", maxChars, n, a.Len(n))
		}
		if a.Len(n+1) <= maxChars {
			t.Fatalf("MaxEnvelope(%d) = %d, but %d bytes fit too", maxChars, n, n+1)
		}
		if n > 0 {
			if got := len(a.Encode(make([]byte, n))); got != a.Len(n) {
				t.Fatalf("Len(%d) = %d, Encode gives %d", n, a.Len(n), got)
			}
		}
	}
	// Mastodon's 500 characters.
	if got := a.MaxEnvelope(500); got != 368 {
		t.Fatalf("MaxEnvelope(500) = %d, want 368", got)
	}
}

// flipChar changes the base64url character at i to another one.
func flipChar(s string, i int) string {
	c := byte('A')
	if s[i] == 'A' {
		c = 'B'
	}
	return s[:i] + string(c) + s[i+1:]
}

// TestNothingConstantAcrossPosts: the armored posts of one channel share
// no prefix, and the cloaked bytes of envelopes of one suite (the same
// version and suite bytes in clear) take many values, on text and binary
// channels alike.
func TestNothingConstantAcrossPosts(t *testing.T) {
	a := NewArmor("friends-room")
	const posts = 64
	firstChars := map[string]bool{}
	firstBytes := map[[2]byte]bool{}
	for i := range posts {
		env := seeded(fmt.Sprintf("post %d", i), 256)
		env[0], env[1] = Version, byte(SuiteBroadcast) // what every broadcast envelope starts with
		armored := a.Encode(env)
		firstChars[armored[:4]] = true
		cloaked := a.Key().Cloak(env)
		firstBytes[[2]byte{cloaked[0], cloaked[1]}] = true
		if found := a.Find("hi " + armored); len(found) != 1 || !bytes.Equal(found[0], env) {
			t.Fatalf("post %d: armored block not found again", i)
		}
		if back := a.Key().Cloak(cloaked); !bytes.Equal(back, env) {
			t.Fatalf("post %d: cloaking twice does not give the item back", i)
		}
	}
	// 64 posts: with 24 random bits in the first 4 characters and 16 in the
	// first two bytes, a repeat is unlikely (p < 0.04) and more than a few
	// would mean a constant.
	if len(firstChars) < posts-2 || len(firstBytes) < posts-4 {
		t.Fatalf("%d distinct armored starts and %d distinct cloaked first bytes in %d posts: something is constant", len(firstChars), len(firstBytes), posts)
	}
}
