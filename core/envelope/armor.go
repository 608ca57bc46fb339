package envelope

import (
	"encoding/base64"
	"fmt"
	"strings"
)

// Armor turns envelopes into text for text channels (mail, posts, chat):
//
//	prefix ‖ base64url(envelope, no padding) ‖ "."
//
// The prefix is chosen per channel (a fixed one would let filters spot
// remora traffic everywhere at once); draw it at random (for example 6
// base32 characters) so that it does not occur in ordinary text. The final
// "." ends the block, so text may follow it directly. Find tolerates what text services do to a block:
// surrounding text, line wrapping (spaces, tabs, CR, LF inside the block),
// mail quoting ("> " after a line break) and several blocks per body.
type Armor struct {
	prefix string
}

// MaxPrefix is the longest armor prefix.
const MaxPrefix = 32

// NewArmor returns the armor with the given prefix: 1 to 32 characters from
// A–Z, a–z, 0–9, "-", "_", ":".
func NewArmor(prefix string) (Armor, error) {
	if len(prefix) == 0 || len(prefix) > MaxPrefix {
		return Armor{}, fmt.Errorf("envelope: armor prefix %q: want 1 to %d characters", prefix, MaxPrefix)
	}
	for i := 0; i < len(prefix); i++ {
		if !isB64(prefix[i]) && prefix[i] != ':' {
			return Armor{}, fmt.Errorf("envelope: armor prefix %q: character %q not allowed; use letters, digits, '-', '_' or ':'", prefix, prefix[i])
		}
	}
	return Armor{prefix: prefix}, nil
}

// Prefix returns the armor's prefix.
func (a Armor) Prefix() string { return a.prefix }

// Encode armors one envelope.
func (a Armor) Encode(env []byte) string {
	var b strings.Builder
	b.Grow(a.Len(len(env)))
	b.WriteString(a.prefix)
	b.WriteString(base64.RawURLEncoding.EncodeToString(env))
	b.WriteByte('.')
	return b.String()
}

// Len returns the armored length, in characters (ASCII: bytes, code points
// and Mastodon characters alike), of an n-byte envelope.
func (a Armor) Len(n int) int { return len(a.prefix) + base64.RawURLEncoding.EncodedLen(n) + 1 }

// MaxEnvelope returns the largest envelope, in bytes, whose armor fits in
// maxChars characters: the Route.MaxSize of a text channel.
func (a Armor) MaxEnvelope(maxChars int) int {
	room := maxChars - len(a.prefix) - 1
	if room <= 0 {
		return 0
	}
	n := room * 3 / 4
	for n > 0 && a.Len(n) > maxChars {
		n--
	}
	return n
}

// Find returns every envelope armored with a's prefix in text, in order.
// A block starts at the beginning of text or after a character that cannot
// be part of base64url, with a base64url character right after the prefix,
// and ends with "."; blocks that are cut short, hold
// other characters, or do not decode to something shaped like an envelope
// of this version are skipped. Find runs in time linear in len(text).
func (a Armor) Find(text string) [][]byte {
	var out [][]byte
	for i := 0; i < len(text); {
		j := strings.Index(text[i:], a.prefix)
		if j < 0 {
			break
		}
		start := i + j
		i = start + 1
		if start > 0 && (isB64(text[start-1]) || text[start-1] == ':') {
			continue
		}
		if at := start + len(a.prefix); at >= len(text) || !isB64(text[at]) {
			continue // Encode never separates the prefix from the block
		}
		env, next, ok := decodeBlock(text, start+len(a.prefix))
		if ok && len(env) >= HeaderSize && env[0] == Version {
			out = append(out, env)
		}
		// Every later start before next would read the same characters up
		// to the same end, so skipping to it keeps Find linear.
		if next > i {
			i = next
		}
	}
	return out
}

// decodeBlock reads base64url characters from text[pos:], skipping line
// wrapping, up to the closing ".". It returns the decoded bytes, the index
// where reading stopped (after the "." or at the offending character) and
// whether a block was decoded.
func decodeBlock(text string, pos int) ([]byte, int, bool) {
	var b strings.Builder
	lineStart := false
	for i := pos; i < len(text); i++ {
		c := text[i]
		switch {
		case isB64(c):
			b.WriteByte(c)
			lineStart = false
		case c == '.':
			if b.Len() == 0 {
				return nil, i, false
			}
			env, err := base64.RawURLEncoding.DecodeString(b.String())
			if err != nil {
				return nil, i + 1, false
			}
			return env, i + 1, true
		case c == '\n' || c == '\r':
			lineStart = true
		case c == ' ' || c == '\t':
		case c == '>' && lineStart:
			// a mail quote marker at the start of a wrapped line
		default:
			return nil, i, false
		}
	}
	return nil, len(text), false
}

func isB64(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}
