package mastodon

import (
	"strings"
	"testing"
)

func TestPlainText(t *testing.T) {
	for _, tc := range []struct {
		name, html, want string
	}{
		{"mention and armor",
			`<p><span class="h-card" translate="no"><a href="https://social.example/@bob" class="u-url mention">@<span>bob</span></a></span> rm1AAAAbbbbCCCCdddd.</p>`,
			"@bob rm1AAAAbbbbCCCCdddd."},
		{"paragraphs and breaks", `<p>one<br />two</p><p>three</p>`, "one\ntwo\n\nthree"},
		{"entities", `<p>a &amp; b &lt;c&gt; &#39;d&#39;</p>`, "a & b <c> 'd'"},
		{"link with invisible parts", `<p><a href="https://x.example/a"><span class="invisible">https://</span><span class="">x.example/a</span></a></p>`, "https://x.example/a"},
		{"not html", "plain text", "plain text"},
		{"unclosed tags", `<p><span>@bob</span> rm1abc`, "@bob rm1abc"},
		{"empty", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := PlainText(tc.html); got != tc.want {
				t.Errorf("PlainText(%q) = %q, want %q", tc.html, got, tc.want)
			}
		})
	}
}

func TestBody(t *testing.T) {
	armor := "rm1" + strings.Repeat("Ab-_9", 10) + "."
	for _, tc := range []struct {
		name, text string
		want       string
		ok         bool
	}{
		{"one mention", "@bob " + armor, armor, true},
		{"remote mentions", "@bob@social.example @carol " + armor, armor, true},
		{"no mention", armor, armor, true},
		{"ordinary mention", "@bob hello, how are you?", "", false},
		{"short word", "@bob hello", "", false},
		{"prose after armor", "@bob " + armor + " thanks", "", false},
		{"link", "@bob https://example.com/" + strings.Repeat("a", 20), "", false},
		{"mention inside", armor + " @bob", "", false},
		{"only mentions", "@bob @carol", "", false},
		{"wrapped over lines", "@bob\n" + armor, armor, true},
		{"non-armor characters", "@bob " + strings.Repeat("é", 20), "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := body(tc.text)
			if got != tc.want || ok != tc.ok {
				t.Errorf("body(%q) = %q, %v; want %q, %v", tc.text, got, ok, tc.want, tc.ok)
			}
		})
	}
}

// FuzzStatusContent: the status content → text → item parser never panics,
// and whatever it returns is armor text that occurs in the plain text.
func FuzzStatusContent(f *testing.F) {
	f.Add(`<p><span class="h-card"><a href="https://s/@bob" class="u-url mention">@<span>bob</span></a></span> rm1AAAAbbbbCCCCdddd.</p>`)
	f.Add(`<p>hello<br/>world</p><p>x</p>`)
	f.Add(`<p>&amp;&lt;&#x27;</p><script>alert(1)</script>`)
	f.Add(`<a href="x"><span class="invisible">https://</span>`)
	f.Add("@a @b rm1" + strings.Repeat("x", 40) + ".")
	f.Add("<p")
	f.Fuzz(func(t *testing.T, content string) {
		text := PlainText(content)
		b, ok := body(text)
		if !ok {
			if b != "" {
				t.Fatalf("rejected but returned %q", b)
			}
			return
		}
		if len(b) < minBody || !armorText(b) || !strings.Contains(text, b) {
			t.Fatalf("body %q from %q is not armor text found in it", b, text)
		}
	})
}
