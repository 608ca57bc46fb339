package imap

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func mustBuild(t testing.TB, keys []string, items ...string) []byte {
	t.Helper()
	var its [][]byte
	for _, s := range items {
		its = append(its, []byte(s))
	}
	raw, _, err := buildMail(outMail{From: "alice@example.test", To: []string{"circle@example.test"}, Date: time.Unix(1700000000, 0), Keys: keys, Items: its})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestBuildParseRoundTrip(t *testing.T) {
	long := strings.Repeat("Ab0_-", 400)
	tests := []struct {
		name  string
		items []string
	}{
		{"one armored", []string{"rmr1.QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo"}},
		{"batch", []string{"a1", "b2", long, "c3"}},
		{"ends with dot on its own line", []string{strings.Repeat("x", lineWidth) + "."}},
		{"starts with dot", []string{".hidden"}},
		{"spaces and newlines", []string{"not armor\r\n.\r\nat all"}},
		{"binary", []string{"\x00\xff\x10=b64"}},
		{"looks like the b64 marker", []string{"=b64"}},
		{"utf-8", []string{"größe-✓"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys := make([]string, len(tt.items))
			for i := range keys {
				keys[i] = randName("k")
			}
			raw := mustBuild(t, keys, tt.items...)
			for _, line := range bytes.Split(raw, []byte("\r\n")) {
				if len(line) > 998 {
					t.Fatalf("line of %d bytes breaks RFC 5322", len(line))
				}
				for _, c := range line {
					if c >= 0x80 {
						t.Fatalf("8-bit byte in a 7bit mail: %q", line)
					}
				}
			}
			p, err := parseMail(bytes.NewReader(raw), 1<<30)
			if err != nil || p.Reason != "" {
				t.Fatalf("parse: %v (reason %q)", err, p.Reason)
			}
			if len(p.Items) != len(tt.items) {
				t.Fatalf("got %d items, want %d", len(p.Items), len(tt.items))
			}
			for i := range tt.items {
				if string(p.Items[i]) != tt.items[i] {
					t.Errorf("item %d: got %q, want %q", i, p.Items[i], tt.items[i])
				}
			}
			if strings.Join(p.Keys, " ") != strings.Join(keys, " ") {
				t.Errorf("keys: got %v, want %v", p.Keys, keys)
			}
			if p.MessageID != messageID(keys) {
				t.Errorf("Message-ID %q, want %q", p.MessageID, messageID(keys))
			}
		})
	}
}

// TestNothingNamesTheCircle checks the headers carry nothing but the
// addresses, the neutral subject and our marker.
func TestMailHeaders(t *testing.T) {
	raw := mustBuild(t, []string{"K1"}, "payload")
	head, _, _ := strings.Cut(string(raw), "\r\n\r\n")
	for _, want := range []string{"Subject: message", "X-Remora: 1", "X-Remora-Items: 1", "Message-Id: <K1@remora.invalid>", "Content-Type: text/plain; charset=us-ascii"} {
		if !strings.Contains(head, want) {
			t.Errorf("header lacks %q:\n%s", want, head)
		}
	}
	if got := messageID([]string{"a", "b"}); !strings.HasPrefix(got, "b-") || got == messageID([]string{"b", "a"}) {
		t.Errorf("batch Message-ID %q must depend on the keys and their order", got)
	}
}

// TestParseMangled feeds what list managers and filters do to a mail.
func TestParseMangled(t *testing.T) {
	raw := mustBuild(t, []string{"k1", "k2"}, "first-item", strings.Repeat("Z", 200))
	head, body, _ := strings.Cut(string(raw), "\r\n\r\n")
	tests := []struct {
		name  string
		mail  string
		items int
	}{
		{"footer appended", string(raw) + "-- \r\nTo unsubscribe write to circle+unsubscribe@example.test\r\n.\r\n", 2},
		{"list headers and subject tag", "List-Id: circle <circle.example.test>\r\n" + strings.Replace(head, "Subject: message", "Subject: [circle] message", 1) + "\r\n\r\n" + body, 2},
		{"quoted-printable re-encoding", strings.Replace(head, "Content-Transfer-Encoding: 7bit", "Content-Transfer-Encoding: quoted-printable", 1) + "\r\n\r\n" + strings.ReplaceAll(body, "ZZZZ", "Z=\r\nZZ=5A"), 2},
		{"LF line ends", strings.ReplaceAll(string(raw), "\r\n", "\n"), 2},
		{"trailing spaces", head + "\r\n\r\n" + strings.ReplaceAll(body, "\r\n", " \t\r\n"), 2},
		{"multipart with a footer part", strings.Replace(head, "Content-Type: text/plain; charset=us-ascii", `Content-Type: multipart/mixed; boundary="BB"`, 1) +
			"\r\n\r\n--BB\r\nContent-Type: text/plain\r\n\r\n" + body + "\r\n--BB\r\nContent-Type: text/plain\r\n\r\nfooter\r\n--BB--\r\n", 2},
		{"body cut short", string(raw[:len(raw)-100]), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := parseMail(strings.NewReader(tt.mail), 1<<30)
			if err != nil || p.Reason != "" {
				t.Fatalf("parse: %v (reason %q)", err, p.Reason)
			}
			if len(p.Items) != tt.items || string(p.Items[0]) != "first-item" {
				t.Fatalf("got %d items (%q), want %d starting with first-item", len(p.Items), p.Items, tt.items)
			}
		})
	}
}

// TestParseNotOurs: ordinary mail, spam, broken MIME, forged headers are
// reported with a reason, never a panic, never as items.
func TestParseNotOurs(t *testing.T) {
	tests := []struct {
		name, mail, reason string
		malformed          bool
	}{
		{"ordinary mail", "From: bob@example.test\r\nSubject: lunch?\r\n\r\nat noon\r\n", reasonForeign, false},
		{"spam", "From: win@spam.test\r\nSubject: =?utf-8?b?WW91IHdvbiE=?=\r\nContent-Type: text/html\r\n\r\n<b>$$$</b>\r\n", reasonForeign, false},
		{"other version", "X-Remora: 2\r\nX-Remora-Items: 1\r\n\r\nabc\r\n.\r\n", reasonBadVersion, false},
		{"forged count", "X-Remora: 1\r\nX-Remora-Items: 99999999\r\n\r\nabc\r\n.\r\n", reasonMalformed, true},
		{"no count", "X-Remora: 1\r\n\r\nabc\r\n.\r\n", reasonMalformed, true},
		{"empty body", "X-Remora: 1\r\nX-Remora-Items: 2\r\n\r\n", reasonMalformed, true},
		{"html body", "X-Remora: 1\r\nX-Remora-Items: 1\r\nContent-Type: text/html\r\n\r\n<p>abc</p>\r\n.\r\n", reasonMalformed, true},
		{"broken multipart", "X-Remora: 1\r\nX-Remora-Items: 1\r\nContent-Type: multipart/mixed; boundary=\"x\"\r\n\r\n--x\r\nContent-Type: text/plain\r\n", reasonMalformed, true},
		{"header garbage", "\x00\x01\x02: \xff\r\n\r\n", reasonMalformed, true},
		{"bad base64 block", "X-Remora: 1\r\nX-Remora-Items: 1\r\n\r\n=b64\r\n!!!!\r\n.\r\n", reasonMalformed, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := parseMail(strings.NewReader(tt.mail), 1<<20)
			if p.Reason != tt.reason {
				t.Errorf("reason %q, want %q (err %v)", p.Reason, tt.reason, err)
			}
			if got := errors.Is(err, errMalformed); got != tt.malformed {
				t.Errorf("errMalformed %v, want %v (err %v)", got, tt.malformed, err)
			}
			if len(p.Items) != 0 {
				t.Errorf("items from a mail that is not ours: %q", p.Items)
			}
		})
	}
}

func TestRewriteMail(t *testing.T) {
	raw := append([]byte("List-Id: circle <circle.example.test>\r\n"), mustBuild(t, []string{"k1", "k2", "k3"}, "one", "two", "three")...)
	out, err := rewriteMail(raw, map[string]bool{"k2": true}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	p, err := parseMail(bytes.NewReader(out), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Items) != 2 || string(p.Items[0]) != "one" || string(p.Items[1]) != "three" || strings.Join(p.Keys, ",") != "k1,k3" {
		t.Fatalf("rewritten mail: items %q keys %v", p.Items, p.Keys)
	}
	if p.ListID != "circle.example.test" || p.MessageID != messageID([]string{"k1", "k3"}) {
		t.Errorf("rewritten mail: List-Id %q Message-ID %q", p.ListID, p.MessageID)
	}
}

func TestCursorAndIDs(t *testing.T) {
	c, err := decodeCursor(nil)
	if err != nil || len(c.Folders) != 0 {
		t.Fatalf("nil cursor: %v %+v", err, c)
	}
	c.set(folderCursor{Name: "INBOX", UIDValidity: 7, UID: 42, Index: 3})
	c.set(folderCursor{Name: "Junk", UIDValidity: 9, UID: 1})
	c.set(folderCursor{Name: "INBOX", UIDValidity: 7, UID: 43})
	back, err := decodeCursor(c.encode())
	if err != nil || len(back.Folders) != 2 || back.folder("INBOX").UID != 43 || back.folder("INBOX").Index != 0 {
		t.Fatalf("round trip: %v %+v", err, back)
	}
	for _, bad := range []string{"x", `{"ver":99}`, "\xff"} {
		if _, err := decodeCursor([]byte(bad)); err == nil || !strings.Contains(err.Error(), "cursor invalid") {
			t.Errorf("cursor %q: got %v, want cursor invalid", bad, err)
		}
	}
	id := itemID("a:b/c", 5, 10, 1, 3)
	p, err := parseItemID(id)
	if err != nil || p.Folder != "a:b/c" || p.UID != 10 || p.Index != 1 || p.Count != 3 || p.UIDValidity != 5 {
		t.Fatalf("item ID %q: %+v %v", id, p, err)
	}
	for _, bad := range []string{"", "1:2:3", "1:0:0:1:INBOX", "1:2:3:3:INBOX", "x:2:0:1:INBOX"} {
		if _, err := parseItemID(bad); err == nil {
			t.Errorf("item ID %q accepted", bad)
		}
	}
	if k, ok := keyOf(keyID("abc_-1")); !ok || k != "abc_-1" {
		t.Errorf("keyOf(keyID) = %q %v", k, ok)
	}
	if _, ok := keyOf("k:bad key"); ok {
		t.Error("keyOf accepted a key with a space")
	}
}

// FuzzParseMail: no input makes the inbound parser panic, return items for
// a mail without our marker, or more items than the mail declares.
func FuzzParseMail(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/mail/*.eml")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(mustBuild(f, []string{"k1", "k2"}, "one", "=b64"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		p, err := parseMail(bytes.NewReader(raw), 1<<20)
		if err != nil && p.Reason == "" {
			t.Fatalf("error %v without a reason", err)
		}
		if p.Reason != "" && len(p.Items) > 0 {
			t.Fatalf("reason %q with %d items", p.Reason, len(p.Items))
		}
		if len(p.Items) > maxItemsPerMail {
			t.Fatalf("%d items", len(p.Items))
		}
		for _, it := range p.Items {
			if len(it) == 0 {
				t.Fatal("empty item")
			}
		}
	})
}
