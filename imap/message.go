package imap

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

const (
	// headerMarker marks our mails; its value is the format version.
	headerMarker = "X-Remora"
	// headerItems is the number of item blocks in the body.
	headerItems = "X-Remora-Items"
	// headerKeys lists the items' idempotency keys (retry detection).
	headerKeys = "X-Remora-Keys"
	// formatVersion is the value of headerMarker this package writes and reads.
	formatVersion = "1"
	// msgIDDomain is the right-hand side of our Message-IDs.
	msgIDDomain = "remora.invalid"
	// subject is the neutral subject of every mail.
	subject = "message"
	// lineWidth is where item text is wrapped.
	lineWidth = 76
	// maxItemsPerMail bounds what the parser accepts from one mail.
	maxItemsPerMail = 4096
	// b64Marker starts a block carrying an item that is not plain armor.
	b64Marker = "=b64"
)

// outMail is one mail to send or append.
type outMail struct {
	From  string
	To    []string
	Date  time.Time
	Keys  []string
	Items [][]byte
}

// messageID returns the Message-ID (without angle brackets) for a mail that
// carries items with these idempotency keys.
func messageID(keys []string) string {
	if len(keys) == 1 {
		return keys[0] + "@" + msgIDDomain
	}
	h := sha256.New()
	for _, k := range keys {
		h.Write([]byte(k))
		h.Write([]byte{0})
	}
	return "b-" + hex.EncodeToString(h.Sum(nil)[:16]) + "@" + msgIDDomain
}

// plainArmor reports whether b can travel as wrapped lines unchanged.
func plainArmor(b []byte) bool {
	if len(b) == 0 || bytes.Equal(b, []byte(b64Marker)) || b[0] == '.' {
		return false
	}
	if len(b)%lineWidth == 1 && b[len(b)-1] == '.' { // the last wrapped line would read "."
		return false
	}
	for _, c := range b {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// writeBlock writes one item block: wrapped lines, then a "." line.
func writeBlock(w *bytes.Buffer, item []byte) {
	text := item
	if !plainArmor(item) {
		w.WriteString(b64Marker + "\r\n")
		text = []byte(base64.StdEncoding.EncodeToString(item))
	}
	for len(text) > 0 {
		n := min(lineWidth, len(text))
		w.Write(text[:n])
		w.WriteString("\r\n")
		text = text[n:]
	}
	w.WriteString(".\r\n")
}

// buildMail renders m as an RFC 5322 message and returns it with its
// Message-ID.
func buildMail(m outMail) ([]byte, string, error) {
	if len(m.Items) == 0 || len(m.Items) != len(m.Keys) {
		return nil, "", fmt.Errorf("build mail: %d items, %d keys", len(m.Items), len(m.Keys))
	}
	var h mail.Header
	from, err := mail.ParseAddress(m.From)
	if err != nil {
		return nil, "", fmt.Errorf("build mail: from %q: %w", m.From, err)
	}
	h.SetAddressList("From", []*mail.Address{from})
	to := make([]*mail.Address, 0, len(m.To))
	for _, a := range m.To {
		addr, err := mail.ParseAddress(a)
		if err != nil {
			return nil, "", fmt.Errorf("build mail: to %q: %w", a, err)
		}
		to = append(to, addr)
	}
	h.SetAddressList("To", to)
	h.SetDate(m.Date)
	h.SetSubject(subject)
	id := messageID(m.Keys)
	h.SetMessageID(id)
	h.Set("MIME-Version", "1.0")
	h.Set("Content-Type", "text/plain; charset=us-ascii")
	h.Set("Content-Transfer-Encoding", "7bit")
	h.Set(headerMarker, formatVersion)
	h.Set(headerItems, strconv.Itoa(len(m.Items)))
	h.Set(headerKeys, strings.Join(m.Keys, " "))

	var buf bytes.Buffer
	if err := textproto.WriteHeader(&buf, h.Header.Header); err != nil {
		return nil, "", fmt.Errorf("build mail: header: %w", err)
	}
	for _, it := range m.Items {
		writeBlock(&buf, it)
	}
	return buf.Bytes(), id, nil
}

// Why a mail was not taken as ours; the Health counters use these names.
const (
	reasonForeign    = "ignored_foreign"     // no X-Remora header: ordinary mail, spam
	reasonNotList    = "ignored_not_list"    // ours, but not through the configured list
	reasonMalformed  = "ignored_malformed"   // X-Remora present but unreadable
	reasonTooLarge   = "ignored_too_large"   // larger than max_mail_bytes; not downloaded
	reasonBadVersion = "ignored_bad_version" // a format version we do not read
	counterBadBlocks = "ignored_bad_blocks"  // unreadable blocks inside an otherwise good mail
)

// parsedMail is what the parser found in one mail.
type parsedMail struct {
	// Reason is empty for our mails, else one of the reason* names.
	Reason    string
	ListID    string
	MessageID string
	From      string
	// Keys are the items' idempotency keys from X-Remora-Keys.
	Keys  []string
	Items [][]byte
	// BadBlocks counts blocks that could not be decoded (skipped).
	BadBlocks int
}

// errMalformed reports mail we cannot read; the caller skips it.
var errMalformed = errors.New("malformed mail")

// listIDValue returns the part of a List-Id header inside angle brackets
// (RFC 2919), or the whole trimmed value.
func listIDValue(v string) string {
	v = strings.TrimSpace(v)
	if i := strings.LastIndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j > 0 {
			return strings.ToLower(strings.TrimSpace(v[i+1 : i+j]))
		}
	}
	return strings.ToLower(v)
}

// parseMail reads an RFC 5322 message and extracts our items. It never
// panics on hostile input and reads at most limit bytes of body. A mail that
// is not ours is reported with a Reason, not an error; an error means the
// mail is unreadable.
func parseMail(r io.Reader, limit int64) (parsedMail, error) {
	var p parsedMail
	e, err := message.Read(bufio.NewReader(r))
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		p.Reason = reasonMalformed
		return p, fmt.Errorf("%w: %v", errMalformed, err)
	}
	h := mail.Header{Header: e.Header}
	p.ListID = listIDValue(h.Get("List-Id"))
	p.MessageID, _ = h.MessageID()
	if from, err := h.AddressList("From"); err == nil && len(from) > 0 {
		p.From = from[0].Address
	}
	p.Keys = strings.Fields(h.Get(headerKeys))
	marker := strings.TrimSpace(h.Get(headerMarker))
	if marker == "" {
		p.Reason = reasonForeign
		return p, nil
	}
	if marker != formatVersion {
		p.Reason = reasonBadVersion
		return p, nil
	}
	want, err := strconv.Atoi(strings.TrimSpace(h.Get(headerItems)))
	if err != nil || want <= 0 || want > maxItemsPerMail {
		p.Reason = reasonMalformed
		return p, fmt.Errorf("%w: %s %q", errMalformed, headerItems, h.Get(headerItems))
	}
	body, err := textBody(e, limit)
	if err != nil {
		p.Reason = reasonMalformed
		return p, err
	}
	p.Items, p.BadBlocks = parseBlocks(body, want)
	if len(p.Items) == 0 {
		p.Reason = reasonMalformed
		return p, fmt.Errorf("%w: no readable item block", errMalformed)
	}
	return p, nil
}

// textBody returns the decoded first text/plain part of e (e itself when it
// is not multipart), at most limit bytes.
func textBody(e *message.Entity, limit int64) (io.Reader, error) {
	mt, _, err := mime.ParseMediaType(e.Header.Get("Content-Type"))
	if err != nil {
		mt = "text/plain" // RFC 2045 default
	}
	if !strings.HasPrefix(mt, "multipart/") {
		if mt != "text/plain" {
			return nil, fmt.Errorf("%w: content type %q", errMalformed, mt)
		}
		return io.LimitReader(e.Body, limit), nil
	}
	mr := e.MultipartReader()
	for depth := 0; ; depth++ {
		if depth > 64 {
			return nil, fmt.Errorf("%w: too many parts", errMalformed)
		}
		part, err := mr.NextPart()
		if err == io.EOF {
			return nil, fmt.Errorf("%w: no text/plain part", errMalformed)
		}
		if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
			return nil, fmt.Errorf("%w: %v", errMalformed, err)
		}
		if part == nil {
			return nil, fmt.Errorf("%w: unreadable part", errMalformed)
		}
		pt, _, err := mime.ParseMediaType(part.Header.Get("Content-Type"))
		if err != nil {
			pt = "text/plain"
		}
		if pt == "text/plain" {
			return io.LimitReader(part.Body, limit), nil
		}
	}
}

// parseBlocks reads up to want blocks from body. Lines are trimmed of
// trailing white space; blank lines between blocks are skipped; whatever
// follows the last wanted block is ignored.
func parseBlocks(body io.Reader, want int) (items [][]byte, bad int) {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	var cur []byte
	b64, started := false, false
	for sc.Scan() && len(items)+bad < want {
		line := bytes.TrimRight(sc.Bytes(), " \t\r")
		switch {
		case string(line) == ".":
			if !started {
				continue
			}
			item := cur
			if b64 {
				dec, err := base64.StdEncoding.DecodeString(string(cur))
				if err != nil {
					bad++
					item = nil
				} else {
					item = dec
				}
			}
			if len(item) > 0 {
				items = append(items, item)
			} else if !b64 {
				bad++
			}
			cur, b64, started = nil, false, false
		case len(line) == 0 && !started:
		case !started && string(line) == b64Marker:
			b64, started = true, true
		default:
			started = true
			cur = append(cur, bytes.TrimLeft(line, " \t")...)
		}
	}
	return items, bad
}
