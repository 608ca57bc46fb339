package envelope

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"hash"
	"strings"
)

// What a channel carries must have no value that is the same in every item:
// a constant prefix, or the version and suite bytes every envelope starts
// with, would let an operator (or a filter across many services) link every
// post of a channel, and so every account that posts to it. Two keyed
// transformations, both keyed by the channel key (derived from the channel
// ID, which all members share), remove them (protocol.md §8):
//
//   - Cloak masks the first two bytes of an item (the version and suite of
//     an envelope, the version and type of a join frame) with two bytes
//     derived from the rest of its header, which is fresh per item. Binary
//     channels carry cloaked items.
//   - Armor turns a cloaked item into text with a mark in front that only
//     holders of the channel key recognise: the mark is 3 bytes derived from
//     the item and a 3-byte MAC of them, so every post starts differently
//     and a receiver still finds blocks in text with one HMAC per word.

// ChannelKey keys the cloak and the armor of one channel.
type ChannelKey [32]byte

// NewChannelKey derives the channel key from the circle-wide channel ID:
// HKDF-SHA256(IKM = channel ID, salt = none, info = "remora/v1/channel key", L = 32).
func NewChannelKey(channelID string) ChannelKey {
	var k ChannelKey
	b, err := hkdf.Key(sha256.New, []byte(channelID), nil, "remora/v1/channel key", len(k))
	if err != nil {
		panic("envelope: hkdf: " + err.Error()) // only for L > 255·32
	}
	copy(k[:], b)
	return k
}

// Labels of the HMACs under the channel key.
const (
	labelCloak    = 0x01
	labelMark     = 0x02
	labelMarkTag  = 0x03
	cloakedBytes  = 2 // bytes of an item the cloak masks
	markBytes     = 3 // the mark's item-derived part, then as many MAC bytes
	armorMarkSize = 2 * markBytes
	// ArmorMarkChars is the length of the mark in armored characters.
	ArmorMarkChars = armorMarkSize * 4 / 3
)

func (k ChannelKey) mac(label byte, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, k[:])
	m.Write([]byte{label})
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

// cloakMask is HMAC-SHA256(channel key, 0x01 ‖ item[2 : min(len, 50)])[:2].
func (k ChannelKey) cloakMask(item []byte) []byte {
	return k.mac(labelCloak, item[cloakedBytes:min(len(item), HeaderSize)])[:cloakedBytes]
}

// Cloak returns a copy of item with its first two bytes masked. Applying it
// twice gives the item back (the mask depends only on bytes it does not
// change), so Cloak also reveals a cloaked item. Items of fewer than three
// bytes are returned unchanged.
func (k ChannelKey) Cloak(item []byte) []byte {
	out := append([]byte(nil), item...)
	if len(item) <= cloakedBytes {
		return out
	}
	subtle.XORBytes(out[:cloakedBytes], out[:cloakedBytes], k.cloakMask(item))
	return out
}

// Armor turns items (envelopes, join frames) into text for text channels
// (mail, posts, chat):
//
//	base64url(mark ‖ Cloak(item)), no padding ‖ "."
//
// with mark = r ‖ HMAC-SHA256(channel key, 0x03 ‖ r)[:3] and
// r = HMAC-SHA256(channel key, 0x02 ‖ Cloak(item))[:3]. Every block starts
// differently, and only holders of the channel key can tell it from other
// base64url text. The final "." ends the block, so text may follow it
// directly. Find tolerates what text services do to a block: surrounding
// text, line wrapping after the mark (spaces, tabs, CR, LF inside the
// block), mail quoting ("> " after a line break) and several blocks per body.
type Armor struct {
	key ChannelKey
}

// NewArmor returns the armor of the channel with the given circle-wide ID.
func NewArmor(channelID string) Armor { return Armor{key: NewChannelKey(channelID)} }

// Key returns the armor's channel key (which cloaks items on the channel).
func (a Armor) Key() ChannelKey { return a.key }

// mark returns the 6-byte mark of a cloaked item.
func (a Armor) mark(cloaked []byte) []byte {
	r := a.key.mac(labelMark, cloaked)[:markBytes]
	return append(r, a.key.mac(labelMarkTag, r)[:markBytes]...)
}

// Encode armors one item.
func (a Armor) Encode(item []byte) string {
	cloaked := a.key.Cloak(item)
	raw := append(a.mark(cloaked), cloaked...)
	var b strings.Builder
	b.Grow(a.Len(len(item)))
	b.WriteString(base64.RawURLEncoding.EncodeToString(raw))
	b.WriteByte('.')
	return b.String()
}

// Len returns the armored length, in characters (ASCII: bytes, code points
// and Mastodon characters alike), of an n-byte item.
func (a Armor) Len(n int) int { return ArmorMarkChars + base64.RawURLEncoding.EncodedLen(n) + 1 }

// MaxEnvelope returns the largest envelope, in bytes, whose armor fits in
// maxChars characters: the Route.MaxSize of a text channel.
func (a Armor) MaxEnvelope(maxChars int) int {
	room := maxChars - ArmorMarkChars - 1
	if room <= 0 {
		return 0
	}
	n := room * 3 / 4
	for n > 0 && a.Len(n) > maxChars {
		n--
	}
	return n
}

// Find returns every item armored for this channel in text, in order,
// revealed (uncloaked). A block starts at the beginning of text or after a
// character that cannot be part of base64url, with a valid mark in its
// first 8 characters, and ends with "."; blocks that are cut short, hold
// other characters, or do not reveal something starting with this version
// are skipped. Find runs in time linear in len(text): one HMAC per word.
func (a Armor) Find(text string) [][]byte {
	var out [][]byte
	tagger := hmac.New(sha256.New, a.key[:])
	var mark [armorMarkSize]byte
	for i := 0; i < len(text); {
		if !isB64(text[i]) || (i > 0 && isB64(text[i-1])) {
			i++
			continue
		}
		start := i
		// Skip to the end of this word whatever happens: no later start
		// inside it is a block start.
		for i < len(text) && isB64(text[i]) {
			i++
		}
		if i-start < ArmorMarkChars || !a.markValid(tagger, text[start:start+ArmorMarkChars], &mark) {
			continue
		}
		raw, next, ok := decodeBlock(text, start)
		if ok && len(raw) > armorMarkSize+cloakedBytes {
			item := a.key.Cloak(raw[armorMarkSize:])
			if item[0] == Version {
				out = append(out, item)
			}
		}
		// Every start before next lies inside this block.
		if next > i {
			i = next
		}
	}
	return out
}

// markValid checks that the 8 characters s encode r ‖ t with t the MAC of r.
func (a Armor) markValid(tagger hash.Hash, s string, buf *[armorMarkSize]byte) bool {
	if n, err := base64.RawURLEncoding.Decode(buf[:], []byte(s)); err != nil || n != armorMarkSize {
		return false
	}
	tagger.Reset()
	tagger.Write([]byte{labelMarkTag})
	tagger.Write(buf[:markBytes])
	return hmac.Equal(tagger.Sum(nil)[:markBytes], buf[markBytes:])
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
