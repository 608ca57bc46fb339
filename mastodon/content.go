package mastodon

import (
	"strings"

	"golang.org/x/net/html"
)

// minBody is the shortest text taken for an item: anything shorter is an
// ordinary word, not an armored envelope.
const minBody = 16

// PlainText turns a status's HTML content (Mastodon wraps paragraphs in
// <p>, line breaks in <br>, mentions and links in <a> with <span>s) into
// plain text: tags dropped, entities decoded, <br> a line break,
// paragraphs separated by a blank line. Invisible URL parts stay (they are
// part of the link's text).
func PlainText(content string) string {
	z := html.NewTokenizer(strings.NewReader(content))
	var b strings.Builder
	paras := 0
	for {
		switch z.Next() {
		case html.ErrorToken:
			return strings.TrimSpace(b.String())
		case html.TextToken:
			b.Write(z.Text())
		case html.StartTagToken, html.SelfClosingTagToken:
			name, _ := z.TagName()
			switch string(name) {
			case "br":
				b.WriteByte('\n')
			case "p":
				if paras > 0 {
					b.WriteString("\n\n")
				}
				paras++
			}
		}
	}
}

// body returns the item a status's plain text carries: the text after its
// leading mentions, when that is one token of armor characters
// (base64url, ':' and '.') at least minBody long. Anything else (prose,
// links, an ordinary mention) is not ours.
func body(text string) (string, bool) {
	fields := strings.Fields(text)
	for len(fields) > 0 && strings.HasPrefix(fields[0], "@") {
		fields = fields[1:]
	}
	if len(fields) != 1 || len(fields[0]) < minBody {
		return "", false
	}
	if !armorText(fields[0]) {
		return "", false
	}
	return fields[0], true
}

// armorText reports whether s holds armor characters only.
func armorText(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == ':' || c == '.') {
			return false
		}
	}
	return s != ""
}
