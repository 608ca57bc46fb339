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
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// Names in a mail are neutral: nothing names the software
// (docs/threat-model.md).
const (
	// headerMarker marks our mails; its value is the format version.
	headerMarker = "X-Sync"
	// headerItems is the number of item blocks in the body.
	headerItems = "X-Sync-Items"
	// headerKeys lists the items' idempotency keys (retry detection).
	headerKeys = "X-Sync-Keys"
	// formatVersion is the value of headerMarker this package writes and
	// reads. Version 1 (blocks ended by a "." line, no digest, under the
	// header X-Remora) let a list header glued onto the first block pass as
	// item data; it is no longer read.
	formatVersion = "2"
	// defaultIDDomain is the right-hand side of our Message-IDs when the
	// sender's address has no domain to lend.
	defaultIDDomain = "localhost"
	// subject starts the subject of every mail; the mail's reference
	// follows, so a list manager's notice that quotes the subject names the
	// mail it is about.
	subject = "message"
	// lineWidth is where item text is wrapped.
	lineWidth = 76
	// maxItemsPerMail bounds what the parser accepts from one mail.
	maxItemsPerMail = 4096
	// beginTag and endTag open and close an item block; see doc.go.
	beginTag = "item"
	endTag   = "end"
	// encText and encB64 say how a block carries its item.
	encText = "text"
	encB64  = "b64"
	// digestLen is the length of a block's digest: base64url of the first
	// 16 bytes of the item's SHA-256.
	digestLen = 22
)

// outMail is one mail to send or append.
type outMail struct {
	From  string
	To    []string
	Date  time.Time
	Keys  []string
	Items [][]byte
}

// messageID returns the Message-ID (without angle brackets) for a mail from
// the address from that carries items with these idempotency keys. Its
// right-hand side is from's domain, as mail clients do.
func messageID(keys []string, from string) string {
	domain := defaultIDDomain
	if at := strings.LastIndexByte(from, '@'); at >= 0 && at < len(from)-1 {
		domain = from[at+1:]
	}
	if len(keys) == 1 {
		return keys[0] + "@" + domain
	}
	return "b-" + hex.EncodeToString(keysHash(keys)[:16]) + "@" + domain
}

func keysHash(keys []string) []byte {
	h := sha256.New()
	for _, k := range keys {
		h.Write([]byte(k))
		h.Write([]byte{0})
	}
	return h.Sum(nil)
}

// mailRef is the reference of the mail carrying these keys: it follows
// "message" in the Subject. List managers quote the subject in their hold
// and reject notices, which is how a notice is tied to the items it holds.
// It is derived from the random keys, so it names nobody.
func mailRef(keys []string) string {
	h := sha256.Sum256(append([]byte("remora/v1/mail-ref\x00"), keysHash(keys)...))
	return hex.EncodeToString(h[:8])
}

// refRE finds a mail reference in a subject or a notice.
var refRE = regexp.MustCompile(`\bmessage ([0-9a-f]{16})\b`)

// itemDigest is the digest a block carries for item.
func itemDigest(item []byte) string {
	h := sha256.Sum256(item)
	return base64.RawURLEncoding.EncodeToString(h[:16])
}

// plainArmor reports whether b can travel as wrapped lines unchanged:
// printable ASCII without spaces (core's armor), so that no line of it can
// be mistaken for a block's first or last line.
func plainArmor(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// blockSize is the number of bytes writeBlock writes for item (key: its
// idempotency key); planning uses it to fill mails up to a size.
func blockSize(item []byte, key string) int {
	n := len(item)
	if !plainArmor(item) {
		n = base64.StdEncoding.EncodedLen(n)
	}
	lines := (n + lineWidth - 1) / lineWidth
	head := len(beginTag) + 1 + 2*5 + 1 + len(key) + 1 + digestLen + 1 + len(encText) + 2
	return head + n + 2*lines + len(endTag) + 1 + 2*5 + 2
}

// writeBlock writes one item block: a first line naming the item (index/
// count, key, digest, encoding), the item wrapped at lineWidth, and a last
// line naming it again.
func writeBlock(w *bytes.Buffer, index, count int, key string, item []byte) {
	text, enc := item, encText
	if !plainArmor(item) {
		text, enc = []byte(base64.StdEncoding.EncodeToString(item)), encB64
	}
	fmt.Fprintf(w, "%s %d/%d %s %s %s\r\n", beginTag, index, count, key, itemDigest(item), enc)
	for len(text) > 0 {
		n := min(lineWidth, len(text))
		w.Write(text[:n])
		w.WriteString("\r\n")
		text = text[n:]
	}
	fmt.Fprintf(w, "%s %d/%d\r\n", endTag, index, count)
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
	h.SetSubject(subject + " " + mailRef(m.Keys))
	id := messageID(m.Keys, from.Address)
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
	for i, it := range m.Items {
		writeBlock(&buf, i+1, len(m.Items), m.Keys[i], it)
	}
	return buf.Bytes(), id, nil
}

// Why a mail was not taken as ours; the Health counters use these names.
const (
	reasonForeign    = "ignored_foreign"     // no X-Sync header: ordinary mail, spam
	reasonNotList    = "ignored_not_list"    // ours, but not through the configured list
	reasonMalformed  = "ignored_malformed"   // X-Sync present but unreadable
	reasonTooLarge   = "ignored_too_large"   // larger than max_mail_bytes; not downloaded
	reasonBadVersion = "ignored_bad_version" // a format version we do not read
	counterDamaged   = "damaged_items"       // blocks altered, cut or missing on the way: never delivered
)

// Why an item of one of our mails is damaged.
const (
	damageAltered   = "altered"   // its bytes do not match the digest
	damageTruncated = "truncated" // no last line, or a new block began inside it
	damageMissing   = "missing"   // declared by X-Sync-Items but not in the body
	damageEncoding  = "undecodable"
)

// parsedItem is one item of a mail: its data, or why it is damaged.
type parsedItem struct {
	Key    string
	Data   []byte
	Damage string // empty for a good item
}

// parsedMail is what the parser found in one mail.
type parsedMail struct {
	// Reason is empty for our mails, else one of the reason* names.
	Reason    string
	ListID    string
	MessageID string
	Subject   string
	From      string
	// ReplyTo, Cc and OriginalFrom are where list managers that rewrite
	// From put the poster (Mailman: Reply-To or Cc; Sympa and others:
	// X-Original-From).
	ReplyTo, Cc  []string
	OriginalFrom string
	// Keys are the items' idempotency keys from X-Sync-Keys.
	Keys []string
	// Items has one entry per declared item, in order; damaged ones carry
	// no data.
	Items []parsedItem
}

// good returns the data of the undamaged items.
func (p parsedMail) good() [][]byte {
	var out [][]byte
	for _, it := range p.Items {
		if it.Damage == "" {
			out = append(out, it.Data)
		}
	}
	return out
}

// damaged counts the damaged items.
func (p parsedMail) damaged() int {
	n := 0
	for _, it := range p.Items {
		if it.Damage != "" {
			n++
		}
	}
	return n
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

// addresses returns the addresses of an address-list header, lower case.
func addresses(h mail.Header, field string) []string {
	list, err := h.AddressList(field)
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range list {
		out = append(out, strings.ToLower(a.Address))
	}
	return out
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
	p.Subject, _ = h.Subject()
	if from := addresses(h, "From"); len(from) > 0 {
		p.From = from[0]
	}
	p.ReplyTo, p.Cc = addresses(h, "Reply-To"), addresses(h, "Cc")
	if of := addresses(h, "X-Original-From"); len(of) > 0 {
		p.OriginalFrom = of[0]
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
	blocks := newBlockReader(want)
	if err := walkText(e, &limit, 0, blocks.read); err != nil && blocks.found == 0 {
		p.Reason = reasonMalformed
		return p, err
	}
	if blocks.found == 0 {
		p.Reason = reasonMalformed
		return p, fmt.Errorf("%w: no item block", errMalformed)
	}
	p.Items = blocks.items(p.Keys)
	return p, nil
}

// walkText calls read with the decoded body of every text/plain part of e,
// in order, descending into multiparts and attached messages (a list that
// adds its header or footer as a part of its own, or wraps the post), until
// read reports it has all it wants. At most *limit bytes are read in all.
func walkText(e *message.Entity, limit *int64, depth int, read func(io.Reader) bool) error {
	if depth > 8 {
		return fmt.Errorf("%w: parts nested too deep", errMalformed)
	}
	mt, _, err := mime.ParseMediaType(e.Header.Get("Content-Type"))
	if err != nil {
		mt = "text/plain" // RFC 2045 default
	}
	switch {
	case mt == "text/plain":
		lr := &io.LimitedReader{R: e.Body, N: *limit}
		done := read(lr)
		*limit = lr.N
		if done {
			return errDone
		}
		return nil
	case mt == "message/rfc822":
		inner, err := message.Read(bufio.NewReader(e.Body))
		if err != nil && inner == nil {
			return fmt.Errorf("%w: attached message: %v", errMalformed, err)
		}
		return walkText(inner, limit, depth+1, read)
	case strings.HasPrefix(mt, "multipart/"):
		mr := e.MultipartReader()
		for n := 0; ; n++ {
			if n > 64 {
				return fmt.Errorf("%w: too many parts", errMalformed)
			}
			part, err := mr.NextPart()
			if err == io.EOF {
				return nil
			}
			if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
				return fmt.Errorf("%w: %v", errMalformed, err)
			}
			if part == nil {
				return fmt.Errorf("%w: unreadable part", errMalformed)
			}
			if err := walkText(part, limit, depth+1, read); err != nil {
				return err
			}
		}
	default:
		return nil
	}
}

// errDone ends walkText early: every block was found.
var errDone = errors.New("all blocks found")

// block is one item block as read from a body.
type block struct {
	key, digest, enc string
	lines            []byte
	closed           bool
}

// blockReader collects the blocks of a mail that declares want items.
// Lines outside blocks (a list header glued onto the body, footers, text
// between parts) are ignored; a block is taken only between its first and
// last line, and its item only if it matches the digest.
type blockReader struct {
	want   int
	blocks map[int]*block
	found  int // blocks whose first line was seen
}

func newBlockReader(want int) *blockReader {
	return &blockReader{want: want, blocks: map[int]*block{}}
}

// parseBegin parses a block's first line.
func parseBegin(line string, want int) (index int, b *block, ok bool) {
	f := strings.Fields(line)
	if len(f) != 5 || f[0] != beginTag {
		return 0, nil, false
	}
	i, n, ok := parsePos(f[1])
	if !ok || n != want || len(f[3]) != digestLen || (f[4] != encText && f[4] != encB64) {
		return 0, nil, false
	}
	return i, &block{key: f[2], digest: f[3], enc: f[4]}, true
}

// parsePos parses "I/N" with 1 <= I <= N.
func parsePos(s string) (int, int, bool) {
	a, b, ok := strings.Cut(s, "/")
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || i < 1 || i > n {
		return 0, 0, false
	}
	return i, n, true
}

// read scans one text part and reports whether every block was found
// closed.
func (br *blockReader) read(body io.Reader) bool {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	var cur *block
	curIndex := 0
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, beginTag+" ") {
			if i, b, ok := parseBegin(line, br.want); ok {
				cur, curIndex = nil, 0 // an open block is cut short
				if br.blocks[i] == nil || !br.blocks[i].closed {
					if br.blocks[i] == nil {
						br.found++
					}
					br.blocks[i], cur, curIndex = b, b, i
				}
				continue
			}
		}
		if cur == nil {
			continue
		}
		if line == fmt.Sprintf("%s %d/%d", endTag, curIndex, br.want) {
			cur.closed = true
			cur, curIndex = nil, 0
			if br.complete() {
				return true
			}
			continue
		}
		cur.lines = append(cur.lines, line...)
		if len(cur.lines) > 2*maxItemBytes {
			cur.lines = nil // hostile: far beyond any item we send
			cur = nil
		}
	}
	return br.complete()
}

func (br *blockReader) complete() bool {
	if len(br.blocks) < br.want {
		return false
	}
	for _, b := range br.blocks {
		if !b.closed {
			return false
		}
	}
	return true
}

// items returns one parsedItem per declared item. keys (from the header)
// name blocks whose own key is unreadable.
func (br *blockReader) items(keys []string) []parsedItem {
	out := make([]parsedItem, br.want)
	for i := range out {
		if i < len(keys) && len(keys) == br.want {
			out[i].Key = keys[i]
		}
		b := br.blocks[i+1]
		switch {
		case b == nil:
			out[i].Damage = damageMissing
			continue
		case !b.closed:
			out[i].Damage = damageTruncated
			continue
		}
		if keyRE.MatchString(b.key) {
			out[i].Key = b.key
		}
		data := b.lines
		if b.enc == encB64 {
			dec, err := base64.StdEncoding.DecodeString(string(b.lines))
			if err != nil {
				out[i].Damage = damageEncoding
				continue
			}
			data = dec
		}
		if len(data) == 0 || itemDigest(data) != b.digest {
			out[i].Damage = damageAltered
			continue
		}
		out[i].Data = data
	}
	return out
}
