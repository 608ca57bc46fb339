package imap

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// testMarks is the mark key of the test channels (ChannelID "test", no
// mark secret given).
var testMarks = newMarkKey("channel:test")

// markedHead is the start of a header that marks a mail as ours, with keys
// in References.
func markedHead(keys ...string) string {
	return "Subject: " + testMarks.mark(mailRef(keys)) + "\r\nReferences: <" + strings.Join(keys, "@x.test> <") + "@x.test>\r\n"
}

func mustBuild(t testing.TB, keys []string, items ...string) []byte {
	t.Helper()
	var its [][]byte
	for _, s := range items {
		its = append(its, []byte(s))
	}
	raw, _, err := buildMail(outMail{From: "alice@example.test", To: []string{"circle@example.test"}, Date: time.Unix(1700000000, 0), Keys: keys, Items: its}, testMarks)
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
		{"looks like a block's last line", []string{"end 1/1"}},
		{"looks like a block's first line", []string{"item 1/1 k AAAAAAAAAAAAAAAAAAAAAA text"}},
		{"utf-8", []string{"größe-✓"}},
		{"armor that is also base64", []string{"QUJD"}},
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
			p, err := parseMail(bytes.NewReader(raw), 1<<30, testMarks)
			if err != nil || p.Reason != "" {
				t.Fatalf("parse: %v (reason %q)", err, p.Reason)
			}
			if len(p.Items) != len(tt.items) {
				t.Fatalf("got %d items, want %d", len(p.Items), len(tt.items))
			}
			for i := range tt.items {
				if it := p.Items[i]; it.Damage != "" || string(it.Data) != tt.items[i] || it.Key != keys[i] {
					t.Errorf("item %d: got %q (key %s, damage %q), want %q", i, it.Data, it.Key, it.Damage, tt.items[i])
				}
			}
			if strings.Join(p.Keys, " ") != strings.Join(keys, " ") {
				t.Errorf("keys: got %v, want %v", p.Keys, keys)
			}
			if p.MessageID != messageID(keys, "alice@example.test") {
				t.Errorf("Message-ID %q, want %q", p.MessageID, messageID(keys, "alice@example.test"))
			}
		})
	}
}

// TestMailHeaders checks the headers carry nothing but the addresses, the
// mark as Subject, the Message-ID and the keys in References, and that
// nothing in a mail names the software.
func TestMailHeaders(t *testing.T) {
	raw := mustBuild(t, []string{"K1", "K2"}, "payload", "more")
	head, _, _ := strings.Cut(string(raw), "\r\n\r\n")
	mark := testMarks.mark(mailRef([]string{"K1", "K2"}))
	for _, want := range []string{"Subject: " + mark, "References: <K1@example.test> <K2@example.test>", "Message-Id: <" + messageID([]string{"K1", "K2"}, "alice@example.test") + ">"} {
		if !strings.Contains(head, want) {
			t.Errorf("header lacks %q:\n%s", want, head)
		}
	}
	if strings.Contains(strings.ToLower(string(raw)), "remora") || strings.Contains(head, "X-") || strings.Contains(head, "Content-") || strings.Contains(head, "MIME-") {
		t.Errorf("the mail names the software or has a header of its own:\n%s", raw)
	}
	if !testMarks.isMark(mark) || newMarkKey("channel:other").isMark(mark) || testMarks.isMark(mark[:markLen/2]+strings.Repeat("0", markLen/2)) {
		t.Errorf("mark %s: only its own channel's key recognises it", mark)
	}
	if got := messageID([]string{"a"}, "alice@example.test"); got != "a@example.test" {
		t.Errorf("Message-ID %q, want a@example.test (the sender's domain)", got)
	}
	if got := messageID([]string{"a"}, "no-domain"); got != "a@localhost" {
		t.Errorf("Message-ID without a sender domain %q, want a@localhost", got)
	}
	if got := messageID([]string{"a", "b"}, "x@example.test"); !regexp.MustCompile(`^[0-9a-f]{32}@example\.test$`).MatchString(got) || got == messageID([]string{"b", "a"}, "x@example.test") {
		t.Errorf("batch Message-ID %q must be hex that depends on the keys and their order", got)
	}
}

// TestParseMangled feeds what list managers and filters do to a mail: every
// good item survives, and an item whose bytes changed is reported damaged,
// never delivered with other data.
func TestParseMangled(t *testing.T) {
	second := strings.Repeat("Z", 200)
	raw := mustBuild(t, []string{"k1", "k2"}, "first-item", second)
	head, body, _ := strings.Cut(string(raw), "\r\n\r\n")
	mark := testMarks.mark(mailRef([]string{"k1", "k2"}))
	multipart := func(parts ...string) string {
		m := head + "\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"BB\"\r\n\r\n"
		for _, p := range parts {
			m += "--BB\r\n" + p + "\r\n"
		}
		return m + "--BB--\r\n"
	}
	b64 := base64.StdEncoding.EncodeToString([]byte("Gruß vom Listenserver\r\n" + body + "-- \r\nFußzeile ✓\r\n"))
	tests := []struct {
		name   string
		mail   string
		damage []string // per item, "" for good
	}{
		{"footer appended", string(raw) + "-- \r\nTo unsubscribe write to circle+unsubscribe@example.test\r\n.\r\n", []string{"", ""}},
		{"list header glued onto the body, no blank line", head + "\r\n\r\nPosts to this list are archived. Be kind.\r\n" + body, []string{"", ""}},
		{"list header without a line end", head + "\r\n\r\nPosts are archived." + body, []string{damageMissing, ""}},
		{"non-ASCII subject tag (RFC 2047)", strings.Replace(head, "Subject: "+mark, "Subject: =?utf-8?q?=5BGr=C3=BC=C3=9Fe=5D_"+mark+"?=", 1) + "\r\n\r\n" + body, []string{"", ""}},
		{"list headers and subject tag", "List-Id: circle <circle.example.test>\r\n" + strings.Replace(head, "Subject: ", "Subject: [circle] Re: ", 1) + "\r\n\r\n" + body, []string{"", ""}},
		{"quoted-printable re-encoding", head + "\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + strings.ReplaceAll(body, "ZZZZ", "Z=\r\nZZ=5A"), []string{"", ""}},
		{"base64 re-encoding with a non-ASCII header and footer", head + "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64 + "\r\n", []string{"", ""}},
		{"LF line ends", strings.ReplaceAll(string(raw), "\r\n", "\n"), []string{"", ""}},
		{"trailing spaces", head + "\r\n\r\n" + strings.ReplaceAll(body, "\r\n", " \t\r\n"), []string{"", ""}},
		{"text between the blocks", head + "\r\n\r\n" + strings.Replace(body, mark+" 1/2\r\n", mark+" 1/2\r\nan ad from the list\r\n\r\n", 1), []string{"", ""}},
		{"multipart with a footer part", multipart("Content-Type: text/plain\r\n\r\n"+body, "Content-Type: text/plain\r\n\r\nfooter"), []string{"", ""}},
		{"multipart with the list header as the first part", multipart("Content-Type: text/plain\r\n\r\nPosts are archived.", "Content-Type: text/plain\r\n\r\n"+body), []string{"", ""}},
		{"post attached to a wrapper (DMARC wrap_message)", multipart("Content-Type: text/plain\r\n\r\nThe list wrapped this post.", "Content-Type: message/rfc822\r\n\r\n"+string(raw)), []string{"", ""}},
		{"a line inserted into an item", head + "\r\n\r\n" + strings.Replace(body, "first-item\r\n", "first-item\r\nsponsored\r\n", 1), []string{damageAltered, ""}},
		{"a character changed", head + "\r\n\r\n" + strings.Replace(body, "first-item", "first-itex", 1), []string{damageAltered, ""}},
		{"body cut short", string(raw[:len(raw)-100]), []string{"", damageTruncated}},
		{"second block gone", head + "\r\n\r\n" + body[:strings.Index(body, mark+" 2/2")], []string{"", damageMissing}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := parseMail(strings.NewReader(tt.mail), 1<<30, testMarks)
			if err != nil || p.Reason != "" {
				t.Fatalf("parse: %v (reason %q)", err, p.Reason)
			}
			if len(p.Items) != 2 {
				t.Fatalf("got %d items, want 2", len(p.Items))
			}
			for i, want := range []string{"first-item", second} {
				it := p.Items[i]
				if it.Damage != tt.damage[i] {
					t.Errorf("item %d: damage %q, want %q", i, it.Damage, tt.damage[i])
				}
				if it.Damage == "" && string(it.Data) != want {
					t.Errorf("item %d delivered as good with data %q, want %q", i, it.Data, want)
				}
				if it.Damage != "" && it.Data != nil {
					t.Errorf("damaged item %d carries data %q", i, it.Data)
				}
				if it.Key != []string{"k1", "k2"}[i] {
					t.Errorf("item %d: key %q", i, it.Key)
				}
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
		{"format 2 (a header of its own)", "X-Sync: 2\r\nX-Sync-Items: 1\r\nX-Sync-Keys: k1\r\nSubject: message 0123456789abcdef\r\n\r\nitem 1/1 k1 " + itemDigest([]byte("abc")) + " text\r\nabc\r\nend 1/1\r\n", reasonForeign, false},
		{"another channel's mark", "Subject: " + newMarkKey("channel:other").mark(mailRef([]string{"k1"})) + "\r\nReferences: <k1@x.test>\r\n\r\nabc\r\n", reasonForeign, false},
		{"a notice quoting our Subject", "Subject: Your message " + testMarks.mark(mailRef([]string{"k1"})) + " awaits approval\r\n\r\nabc\r\n", reasonForeign, false},
		{"too many keys", "Subject: " + testMarks.mark(mailRef([]string{"k1"})) + "\r\nReferences: " + strings.Repeat("<k@x.test> ", maxItemsPerMail+1) + "\r\n\r\nabc\r\n", reasonMalformed, true},
		{"empty body", markedHead("k1", "k2") + "\r\n", reasonMalformed, true},
		{"no block", markedHead("k1") + "\r\nabc\r\n.\r\n", reasonMalformed, true},
		{"html body", markedHead("k1") + "Content-Type: text/html\r\n\r\n<p>abc</p>\r\n", reasonMalformed, true},
		{"broken multipart", markedHead("k1") + "Content-Type: multipart/mixed; boundary=\"x\"\r\n\r\n--x\r\nContent-Type: text/plain\r\n", reasonMalformed, true},
		{"header garbage", "\x00\x01\x02: \xff\r\n\r\n", reasonMalformed, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := parseMail(strings.NewReader(tt.mail), 1<<20, testMarks)
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

// TestParseDamagedBlocks: blocks that lie about themselves are damaged, and
// never turn into good items.
func TestParseDamagedBlocks(t *testing.T) {
	head := markedHead("k1") + "\r\n"
	m := testMarks.mark(mailRef([]string{"k1"}))
	good := itemDigest([]byte("abc"))
	tests := []struct{ name, body, damage string }{
		{"bad base64", m + " 1/1 k1 " + itemDigest([]byte("x")) + "\r\n!!!!\r\n" + m + " 1/1\r\n", damageAltered},
		{"wrong digest", m + " 1/1 k1 " + itemDigest([]byte("abd")) + "\r\nabc\r\n" + m + " 1/1\r\n", damageAltered},
		{"empty block", m + " 1/1 k1 " + good + "\r\n" + m + " 1/1\r\n", damageAltered},
		{"end of another block", m + " 1/1 k1 " + good + "\r\nabc\r\n" + m + " 2/1\r\n", damageTruncated},
		{"another mail's block", "0123456789abcdef0123456789abcdef 1/1 k1 " + good + "\r\nabc\r\n0123456789abcdef0123456789abcdef 1/1\r\n", ""},
		{"count disagrees with References", m + " 1/2 k1 " + good + "\r\nabc\r\n" + m + " 1/2\r\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := parseMail(strings.NewReader(head+tt.body), 1<<20, testMarks)
			if tt.damage == "" {
				if err == nil || p.Reason != reasonMalformed {
					t.Fatalf("got %v, reason %q: want malformed (no block for this mail)", err, p.Reason)
				}
				return
			}
			if err != nil || len(p.Items) != 1 || p.Items[0].Damage != tt.damage || p.Items[0].Data != nil {
				t.Fatalf("got %v, items %+v: want one item damaged %q", err, p.Items, tt.damage)
			}
		})
	}
}

func TestRewriteMail(t *testing.T) {
	raw := append([]byte("List-Id: circle <circle.example.test>\r\n"), mustBuild(t, []string{"k1", "k2", "k3"}, "one", "two", "three")...)
	out, err := rewriteMail(raw, map[string]bool{"k2": true}, 1<<20, testMarks)
	if err != nil {
		t.Fatal(err)
	}
	p, err := parseMail(bytes.NewReader(out), 1<<20, testMarks)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Items) != 2 || string(p.Items[0].Data) != "one" || string(p.Items[1].Data) != "three" || strings.Join(p.Keys, ",") != "k1,k3" {
		t.Fatalf("rewritten mail: items %q keys %v", p.Items, p.Keys)
	}
	if p.ListID != "circle.example.test" || p.MessageID != messageID([]string{"k1", "k3"}, "alice@example.test") {
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
		p, err := parseMail(bytes.NewReader(raw), 1<<20, testMarks)
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
			if it.Damage == "" && (len(it.Data) == 0 || len(it.Data) > 2*maxItemBytes) {
				t.Fatalf("good item of %d bytes", len(it.Data))
			}
			if it.Damage != "" && it.Data != nil {
				t.Fatal("damaged item with data")
			}
		}
	})
}

// TestSender: where a list rewrote From to its own address, the poster comes
// from the header the list manager uses for it.
func TestSender(t *testing.T) {
	list := Config{Mode: ModeList, ListAddress: "circle@lists.example.test"}
	tests := []struct {
		name, header string
		cfg          Config
		want         string
	}{
		{"From kept", "From: alice@example.test\r\n", list, "alice@example.test"},
		{"Mailman munge_from: Reply-To", "From: \"alice via circle\" <circle@lists.example.test>\r\nReply-To: alice@example.test\r\n", list, "alice@example.test"},
		{"Mailman with reply_goes_to_list: Cc", "From: <circle@lists.example.test>\r\nReply-To: circle@lists.example.test\r\nCc: alice@example.test\r\n", list, "alice@example.test"},
		{"Sympa dmarc_protection: X-Original-From", "From: \"alice (via circle)\" <circle@lists.example.test>\r\nX-Original-From: alice@example.test\r\nReply-To: circle@lists.example.test\r\n", list, "alice@example.test"},
		{"ambiguous Reply-To: the list address stays", "From: circle@lists.example.test\r\nReply-To: a@example.test, b@example.test\r\n", list, "circle@lists.example.test"},
		{"direct mode: From as it is", "From: circle@lists.example.test\r\nReply-To: alice@example.test\r\n", Config{Mode: ModeDirect}, "circle@lists.example.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := parseMail(strings.NewReader(tt.header+"\r\nbody\r\n"), 1<<20, testMarks)
			if got := tt.cfg.sender(p); got != tt.want {
				t.Errorf("sender %q, want %q", got, tt.want)
			}
		})
	}
}
