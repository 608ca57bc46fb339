package envelope

import (
	"bytes"
	"strings"
	"testing"
)

func testEnvelope(n int) []byte {
	env := seeded("armor env", n)
	env[0] = Version
	return env
}

func TestArmorFind(t *testing.T) {
	a, err := NewArmor("kq7x")
	if err != nil {
		t.Fatal(err)
	}
	e1, e2 := testEnvelope(300), testEnvelope(HeaderSize)
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
		{"prefix inside a word is not a block", "xkq7x" + b1[4:], nil},
		{"prefix then space", "kq7x " + b1[4:], nil},
		{"cut short (no dot)", strings.TrimSuffix(b1, "."), nil},
		{"foreign character inside", b1[:40] + "!" + b1[40:], nil},
		{"another channel's prefix", strings.Replace(b1, "kq7x", "zz9y", 1), nil},
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
	a, err := NewArmor("rm0-")
	if err != nil {
		t.Fatal(err)
	}
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
	if got := a.MaxEnvelope(500); got != 371 {
		t.Fatalf("MaxEnvelope(500) = %d, want 371", got)
	}
}

func TestNewArmorRejects(t *testing.T) {
	for _, p := range []string{"", "has space", "dot.", strings.Repeat("a", MaxPrefix+1), "é"} {
		if _, err := NewArmor(p); err == nil {
			t.Errorf("NewArmor(%q) accepted", p)
		}
	}
}
