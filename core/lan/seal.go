package lan

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"golang.org/x/crypto/chacha20poly1305"
)

// Announcement is what a member learns from a sealed entry.
type Announcement struct {
	Peer     peer.ID
	Addrs    []ma.Multiaddr
	IssuedAt time.Time
	// Instance is the DNS-SD instance name it was read under (set by the
	// reader; not sealed).
	Instance string
}

const (
	version = 1
	// entryPrefix starts every TXT string that carries an entry.
	entryPrefix = "s="
	// maxTXT is DNS's limit on one character-string.
	maxTXT = 255
	// MinEntries is how many TXT strings an announcement has at least
	// (circles' entries padded with random ones).
	MinEntries = 4
	// MaxEntries bounds the entries announced and the strings read from
	// one announcement.
	MaxEntries = 16
	// MaxAge is how old (or how far in the future) an entry may be.
	MaxAge = 10 * time.Minute
)

var aad = []byte("remora/v1/lan")

// maxPlain is the most plaintext that fits one TXT string.
var maxPlain = base64.RawURLEncoding.DecodedLen(maxTXT-len(entryPrefix)) - chacha20poly1305.NonceSizeX - chacha20poly1305.Overhead

// ErrTooLarge: the peer ID with a single address does not fit one entry.
var ErrTooLarge = errors.New("lan: announcement does not fit a TXT string")

// Seal makes the TXT string carrying a under key. Addresses that do not fit
// are left out (in the order given).
func Seal(key [32]byte, a Announcement) (string, error) {
	plain := []byte{version}
	plain = binary.BigEndian.AppendUint64(plain, uint64(a.IssuedAt.Unix()))
	plain = append(plain, byte(len(a.Peer)))
	plain = append(plain, a.Peer...)
	countAt := len(plain)
	plain = append(plain, 0)
	for _, m := range a.Addrs {
		b := m.Bytes()
		if len(b) > 255 || len(plain)+1+len(b) > maxPlain || plain[countAt] == 255 {
			continue
		}
		plain = append(plain, byte(len(b)))
		plain = append(plain, b...)
		plain[countAt]++
	}
	if len(a.Peer) > 255 || len(plain) > maxPlain || plain[countAt] == 0 {
		return "", ErrTooLarge
	}
	aead, err := chacha20poly1305.NewX(key[:])
	if err != nil {
		return "", fmt.Errorf("lan: seal: %w", err)
	}
	out := make([]byte, chacha20poly1305.NonceSizeX, chacha20poly1305.NonceSizeX+len(plain)+aead.Overhead())
	rand.Read(out)
	out = aead.Seal(out, out, plain, aad)
	return entryPrefix + base64.RawURLEncoding.EncodeToString(out), nil
}

// Pad returns a random TXT string of length characters that looks like an
// entry: padding no one without a key can tell from one.
func Pad(length int) string {
	b := make([]byte, base64.RawURLEncoding.DecodedLen(length-len(entryPrefix)))
	rand.Read(b)
	return entryPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// Open tries every key on a TXT string; ok is false when it is not an
// entry any of the keys sealed, or it is older than MaxAge (or newer) at
// now.
func Open(keys [][32]byte, txt string, now time.Time) (Announcement, bool) {
	s, ok := strings.CutPrefix(txt, entryPrefix)
	if !ok || len(txt) > maxTXT {
		return Announcement{}, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(raw) < chacha20poly1305.NonceSizeX+chacha20poly1305.Overhead {
		return Announcement{}, false
	}
	nonce, ct := raw[:chacha20poly1305.NonceSizeX], raw[chacha20poly1305.NonceSizeX:]
	for _, k := range keys {
		aead, err := chacha20poly1305.NewX(k[:])
		if err != nil {
			continue
		}
		plain, err := aead.Open(nil, nonce, ct, aad)
		if err != nil {
			continue
		}
		a, err := parse(plain)
		if err != nil {
			return Announcement{}, false
		}
		if d := now.Sub(a.IssuedAt); d > MaxAge || d < -MaxAge {
			return Announcement{}, false
		}
		return a, true
	}
	return Announcement{}, false
}

func parse(p []byte) (Announcement, error) {
	var a Announcement
	bad := errors.New("lan: malformed entry")
	if len(p) < 1+8+1 || p[0] != version {
		return a, bad
	}
	a.IssuedAt = time.Unix(int64(binary.BigEndian.Uint64(p[1:9])), 0)
	p = p[9:]
	n := int(p[0])
	if len(p) < 1+n+1 {
		return a, bad
	}
	id, err := peer.IDFromBytes(p[1 : 1+n])
	if err != nil {
		return a, bad
	}
	a.Peer = id
	p = p[1+n:]
	count := int(p[0])
	p = p[1:]
	for range count {
		if len(p) < 1 || len(p) < 1+int(p[0]) {
			return a, bad
		}
		m, err := ma.NewMultiaddrBytes(p[1 : 1+int(p[0])])
		if err != nil {
			return a, bad
		}
		a.Addrs = append(a.Addrs, m)
		p = p[1+int(p[0]):]
	}
	if len(p) != 0 || len(a.Addrs) == 0 {
		return a, bad
	}
	return a, nil
}
