package imap

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// Nothing in a mail is the same in every mail of a channel
// (docs/threat-model.md): there is no header of our own, the Subject is the
// mail's mark, and blocks are framed by it (doc.go).
const (
	// defaultIDDomain is the right-hand side of our Message-IDs when the
	// sender's address has no domain to lend.
	defaultIDDomain = "localhost"
	// lineWidth is where item text is wrapped.
	lineWidth = 76
	// maxItemsPerMail bounds what the parser accepts from one mail.
	maxItemsPerMail = 4096
	// digestLen is the length of a block's digest: base64url of the first
	// 16 bytes of the item's SHA-256.
	digestLen = 22
	// refBytes is the length of a mail's reference, and of the MAC that
	// follows it in the mark.
	refBytes = 8
	// markLen is the length of a mark in hex digits.
	markLen = 4 * refBytes
)

// markKey keys the marks of one channel. Every member's adapter derives the
// same key from the secret the host gives it (sdk.SecretMarkKey: derived
// from the circle-wide channel ID), so members recognise each other's mails
// and nobody else can tell them from random hex.
type markKey [32]byte

// newMarkKey derives the mark key from the channel's mark secret.
func newMarkKey(secret string) markKey {
	return markKey(sha256.Sum256([]byte("remora/v1/mail mark\x00" + secret)))
}

// mark returns the mark of the mail whose reference is ref: ref and a MAC
// of it, in hex.
func (k markKey) mark(ref []byte) string {
	m := hmac.New(sha256.New, k[:])
	m.Write(ref)
	return hex.EncodeToString(ref) + hex.EncodeToString(m.Sum(nil)[:refBytes])
}

// isMark reports whether w is a mark made with k.
func (k markKey) isMark(w string) bool {
	if len(w) != markLen {
		return false
	}
	ref, err := hex.DecodeString(w[:markLen/2])
	if err != nil {
		return false
	}
	return hmac.Equal([]byte(k.mark(ref)), []byte(w))
}

// find returns the first mark made with k among the words of text (a
// Subject, perhaps with a list's tag or "Re:" in front, or a notice that
// quotes it), or "".
func (k markKey) find(text string) string {
	for _, w := range markRE.FindAllString(text, -1) {
		if k.isMark(w) {
			return w
		}
	}
	return ""
}

// marks returns every distinct mark made with k in text.
func (k markKey) marks(text string) []string {
	var out []string
	for _, w := range markRE.FindAllString(text, -1) {
		if k.isMark(w) && !slices.Contains(out, w) {
			out = append(out, w)
		}
	}
	return out
}

// markRE finds candidate marks.
var markRE = regexp.MustCompile(`\b[0-9a-f]{32}\b`)

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
	domain := idDomain(from)
	if len(keys) == 1 {
		return keys[0] + "@" + domain
	}
	return hex.EncodeToString(keysHash(keys)[:16]) + "@" + domain
}

func keysHash(keys []string) []byte {
	h := sha256.New()
	for _, k := range keys {
		h.Write([]byte(k))
		h.Write([]byte{0})
	}
	return h.Sum(nil)
}

// mailRef is the reference of the mail carrying these keys: the first
// half of its mark. It is derived from the random keys, so a retry of the
// same items has the same Subject and names nobody.
func mailRef(keys []string) []byte {
	h := sha256.Sum256(append([]byte("remora/v1/mail-ref\x00"), keysHash(keys)...))
	return h[:refBytes]
}

// keysRefs returns the References header's message IDs for keys: key@domain
// each, so a retry can be found with IMAP SEARCH HEADER.
func keysRefs(keys []string, from string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k + "@" + idDomain(from)
	}
	return out
}

// idDomain is the right-hand side of our Message-IDs: from's domain.
func idDomain(from string) string {
	if at := strings.LastIndexByte(from, '@'); at >= 0 && at < len(from)-1 {
		return from[at+1:]
	}
	return defaultIDDomain
}

// refsKeys returns the keys in a References header's message IDs.
func refsKeys(h mail.Header) []string {
	ids, err := h.MsgIDList("References")
	if err != nil {
		return nil
	}
	var out []string
	for _, id := range ids {
		k, _, _ := strings.Cut(id, "@")
		if keyRE.MatchString(k) {
			out = append(out, k)
		}
	}
	return out
}

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
	head := markLen + 1 + 2*5 + 1 + len(key) + 1 + digestLen + 2
	return head + n + 2*lines + markLen + 1 + 2*5 + 2
}

// writeBlock writes one item block: a first line naming the item (the
// mail's mark, index/count, key, digest), the item wrapped at lineWidth,
// and a last line naming it again (mark, index/count). An item that is not
// plain armor travels as standard base64; the digest tells which.
func writeBlock(w *bytes.Buffer, mark string, index, count int, key string, item []byte) {
	text := item
	if !plainArmor(item) {
		text = []byte(base64.StdEncoding.EncodeToString(item))
	}
	fmt.Fprintf(w, "%s %d/%d %s %s\r\n", mark, index, count, key, itemDigest(item))
	for len(text) > 0 {
		n := min(lineWidth, len(text))
		w.Write(text[:n])
		w.WriteString("\r\n")
		text = text[n:]
	}
	fmt.Fprintf(w, "%s %d/%d\r\n", mark, index, count)
}

// buildMail renders m as an RFC 5322 message marked with k and returns it
// with its Message-ID.
func buildMail(m outMail, k markKey) ([]byte, string, error) {
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
	mark := k.mark(mailRef(m.Keys))
	h.SetSubject(mark)
	id := messageID(m.Keys, from.Address)
	h.SetMessageID(id)
	h.SetMsgIDList("References", keysRefs(m.Keys, from.Address))
	// No MIME headers: a mail without them is text/plain in US-ASCII,
	// 7bit (RFC 2045), which ours is; what a list adds is the list's.

	var buf bytes.Buffer
	if err := textproto.WriteHeader(&buf, h.Header.Header); err != nil {
		return nil, "", fmt.Errorf("build mail: header: %w", err)
	}
	for i, it := range m.Items {
		writeBlock(&buf, mark, i+1, len(m.Items), m.Keys[i], it)
	}
	return buf.Bytes(), id, nil
}

// Why a mail was not taken as ours; the Health counters use these names.
const (
	reasonForeign   = "ignored_foreign"   // no mark of ours in the Subject, or no keys: ordinary mail, spam, a notice
	reasonNotList   = "ignored_not_list"  // ours, but not through the configured list
	reasonMalformed = "ignored_malformed" // marked as ours but unreadable
	reasonTooLarge  = "ignored_too_large" // larger than max_mail_bytes; not downloaded
	counterDamaged  = "damaged_items"     // blocks altered, cut or missing on the way: never delivered
)

// Why an item of one of our mails is damaged.
const (
	damageAltered   = "altered"   // its bytes do not match the digest
	damageTruncated = "truncated" // no last line, or a new block began inside it
	damageMissing   = "missing"   // named in References but not in the body
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
	// Mark is the mail's mark (from the Subject), "" if it has none of ours.
	Mark string
	// Keys are the items' idempotency keys from References.
	Keys []string
	// Items has one entry per declared item, in order; damaged ones carry
	// no data.
	Items []parsedItem
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

// parseMail reads an RFC 5322 message and extracts our items: those of a
// mail whose Subject holds a mark made with k. It never panics on hostile
// input and reads at most limit bytes of body. A mail that is not ours is
// reported with a Reason, not an error; an error means the mail is
// unreadable.
func parseMail(r io.Reader, limit int64, k markKey) (parsedMail, error) {
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
	p.Keys = refsKeys(h)
	p.Mark = k.find(p.Subject)
	if p.Mark == "" || len(p.Keys) == 0 {
		// not ours; a notice or a reply that quotes our Subject has no
		// keys of its own in References
		p.Reason = reasonForeign
		return p, nil
	}
	if len(p.Keys) > maxItemsPerMail {
		p.Reason = reasonMalformed
		return p, fmt.Errorf("%w: %d keys in References", errMalformed, len(p.Keys))
	}
	blocks := newBlockReader(p.Mark, len(p.Keys))
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
	key, digest string
	lines       []byte
	closed      bool
}

// blockReader collects the blocks of a mail that declares want items.
// Lines outside blocks (a list header glued onto the body, footers, text
// between parts) are ignored; a block is taken only between its first and
// last line, and its item only if it matches the digest.
type blockReader struct {
	mark   string // the mail's mark: first word of every block line
	want   int
	blocks map[int]*block
	found  int // blocks whose first line was seen
}

func newBlockReader(mark string, want int) *blockReader {
	return &blockReader{mark: mark, want: want, blocks: map[int]*block{}}
}

// parseBegin parses a block's first line.
func parseBegin(line, mark string, want int) (index int, b *block, ok bool) {
	f := strings.Fields(line)
	if len(f) != 4 || f[0] != mark {
		return 0, nil, false
	}
	i, n, ok := parsePos(f[1])
	if !ok || n != want || len(f[3]) != digestLen {
		return 0, nil, false
	}
	return i, &block{key: f[2], digest: f[3]}, true
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
		if strings.HasPrefix(line, br.mark+" ") {
			if i, b, ok := parseBegin(line, br.mark, br.want); ok {
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
		if line == fmt.Sprintf("%s %d/%d", br.mark, curIndex, br.want) {
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
		// plain armor travels as it is, anything else as base64: the
		// digest, over the item's own bytes, says which it was
		data := b.lines
		if len(data) == 0 || itemDigest(data) != b.digest {
			dec, err := base64.StdEncoding.DecodeString(string(b.lines))
			if err != nil || len(dec) == 0 || itemDigest(dec) != b.digest {
				out[i].Damage = damageAltered
				continue
			}
			data = dec
		}
		out[i].Data = data
	}
	return out
}
