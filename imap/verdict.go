package imap

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"

	"github.com/remora-p2p/remora/sdk"
)

// A list manager does not always distribute a post: it may hold it for a
// moderator (Mailman holds anything over 40 KB by default), reject it, or an
// MTA may bounce it. The poster learns of it only from a notice in their
// own mailbox, minutes or never. In list mode Publish therefore waits,
// after sending, for the list's verdict on each mail:
//
//   - the mail comes back through the list (the member's own copy, with
//     our Message-ID and the list's List-Id): distributed;
//   - a notice quoting the mail's mark (its Subject, which Mailman's hold
//     notice repeats, and a rejection or bounce carries in the attached
//     original): held or rejected — a per-item error;
//   - neither within confirm_timeout: see echoState.
//
// Whether the list sends members their own posts is learned: the first
// copy that comes back marks the channel "echo"; a first wait that times out
// with no copy ever seen marks it "no-echo" (some providers, Gmail among
// them, file a member's own list post away and never show it again), and
// Publish stops waiting. The state is kept in the channel's state dir.

// echoState is what the channel learned about copies of its own posts.
type echoState string

const (
	echoUnknown echoState = ""
	echoSeen    echoState = "echo"
	echoNone    echoState = "no-echo"
)

const echoFile = "list-echo"

func (ch *channel) loadEcho() {
	if ch.stateDir == "" {
		return
	}
	b, err := os.ReadFile(filepath.Join(ch.stateDir, echoFile))
	if err == nil {
		switch s := echoState(strings.TrimSpace(string(b))); s {
		case echoSeen, echoNone:
			ch.echo = s
		}
	}
}

func (ch *channel) setEcho(s echoState) {
	ch.mu.Lock()
	changed := ch.echo != s
	ch.echo = s
	ch.mu.Unlock()
	if !changed || ch.stateDir == "" {
		return
	}
	if err := os.WriteFile(filepath.Join(ch.stateDir, echoFile), []byte(string(s)+"\n"), 0o600); err != nil {
		ch.log.Warn("imap: cannot save what the list does with own posts", "err", err)
	}
}

// sentMail is one mail Publish sent and awaits the list's verdict on.
type sentMail struct {
	plan  mailPlan
	msgID string
	ref   string
	size  int
	// verdict: nil while waiting or when distributed; set by a notice or a
	// timeout.
	done bool
	err  error
}

// watchMark is where each watched folder's new mail starts (UIDNEXT before
// sending).
type watchMark map[string]imap.UID

// verdictFolders are where copies and notices arrive: the watched folder
// (a Sieve rule may file our mails there) and INBOX (notices are not ours:
// no keys in References).
func (ch *channel) verdictFolders() []string {
	if strings.EqualFold(ch.cfg.Folder, "INBOX") {
		return []string{ch.cfg.Folder}
	}
	return []string{ch.cfg.Folder, "INBOX"}
}

// confirming reports whether Publish waits for the list's verdict.
func (ch *channel) confirming() bool {
	if ch.cfg.Mode != ModeList || ch.cfg.NoConfirm {
		return false
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.echo != echoNone
}

// withWatch runs f on the connection that watches for verdicts, dialing it
// (with an EXISTS handler) if needed; a failed connection is dropped.
func (ch *channel) withWatch(ctx context.Context, f func(c *imapclient.Client, wake <-chan struct{}) error) error {
	ch.watchMu.Lock()
	defer ch.watchMu.Unlock()
	if ch.isClosed() {
		return errClosed
	}
	if ch.watch == nil {
		wake := make(chan struct{}, 1)
		c, err := ch.dialIMAP(ctx, &imapclient.UnilateralDataHandler{
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					select {
					case wake <- struct{}{}:
					default:
					}
				}
			},
		})
		if err != nil {
			return err
		}
		ch.mu.Lock() // Close reads watch under mu
		ch.watch, ch.watchWake = c, wake
		ch.mu.Unlock()
	}
	c := ch.watch
	stop := context.AfterFunc(ctx, func() { c.Close() })
	// A server that stalls or trickles fails the round by its deadline
	// (confirm_timeout is checked between scans, so one more timeout for
	// the scan under way), even when ctx has none.
	err := withinErr(c, "watch for verdicts", ch.cfg.ConfirmTimeout.D()+ch.cfg.Timeout.D(), func() error { return f(c, ch.watchWake) })
	stop()
	if err != nil {
		c.Close()
		ch.mu.Lock()
		ch.watch = nil
		ch.mu.Unlock()
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return err
}

// mark records UIDNEXT of the verdict folders before mails are sent.
func (ch *channel) mark(ctx context.Context) (watchMark, error) {
	m := watchMark{}
	err := ch.withWatch(ctx, func(c *imapclient.Client, _ <-chan struct{}) error {
		for _, f := range ch.verdictFolders() {
			st, err := c.Status(f, &imap.StatusOptions{UIDNext: true}).Wait()
			if err != nil {
				return classify("status of "+f, "", err)
			}
			m[f] = st.UIDNext
		}
		return nil
	})
	return m, err
}

// noticeMaxBytes bounds the notices downloaded while waiting.
const noticeMaxBytes = 256 << 10

var verdictHeader = &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Peek: true,
	HeaderFields: []string{"Message-Id", "From", "Subject", "List-Id", "References", "Content-Type"}}

// await waits until every mail in sent has a verdict or the timeout ends,
// and returns how many mails came back through the list.
func (ch *channel) await(ctx context.Context, mark watchMark, sent []*sentMail) (echoed int, err error) {
	deadline := time.Now().Add(ch.cfg.ConfirmTimeout.D())
	pending := func() int {
		n := 0
		for _, s := range sent {
			if !s.done {
				n++
			}
		}
		return n
	}
	// The copies come back to the watched folder: IDLE there. A notice
	// lands in INBOX, where nothing wakes us: look there at once, then
	// after 1, 2, 4 … 8 s, and at the deadline. Scanning both every
	// 500 ms cost a member two EXAMINEs and two FETCHes per half second
	// of the list's fan-out (BENCHMARKS.md, "Scale through a mailing
	// list").
	folders := ch.verdictFolders()
	watched, inbox := folders[0], ""
	if len(folders) == 2 {
		inbox = folders[1]
	}
	var inboxDue time.Time
	inboxGap := time.Second
	err = ch.withWatch(ctx, func(c *imapclient.Client, wake <-chan struct{}) error {
		for {
			scan := []string{watched}
			if inbox != "" && (!ch.push || !time.Now().Before(inboxDue) || !time.Now().Before(deadline)) {
				// INBOX first: the watched folder stays selected for IDLE.
				scan = []string{inbox, watched}
				inboxDue, inboxGap = time.Now().Add(inboxGap), min(2*inboxGap, maxInboxGap)
			}
			for _, f := range scan {
				n, err := ch.scanVerdicts(c, f, mark, sent)
				echoed += n
				if err != nil {
					return err
				}
			}
			left := time.Until(deadline)
			if pending() == 0 || left <= 0 {
				return nil
			}
			if ch.push {
				// IDLE in the watched folder until new mail, INBOX's
				// next look or the deadline
				wait := min(left, ch.cfg.IdleRestart.D())
				if inbox != "" {
					wait = min(wait, time.Until(inboxDue))
				}
				if wait <= 0 {
					continue
				}
				if err := idleUntil(ctx, c, wake, watched, wait); err != nil {
					return err
				}
				continue
			}
			// no IDLE: look again shortly
			if err := sdk.Sleep(ctx, min(left, 500*time.Millisecond)); err != nil {
				return err
			}
		}
	})
	return echoed, err
}

// maxInboxGap bounds the wait between two looks at INBOX for a notice
// while Publish waits for a verdict.
const maxInboxGap = 8 * time.Second

// idleEndTimeout bounds the server's answer to DONE.
const idleEndTimeout = 30 * time.Second

// idleUntil runs IDLE on the selected folder until wake, d or ctx; it
// returns ctx.Err() once ctx ended.
func idleUntil(ctx context.Context, c *imapclient.Client, wake <-chan struct{}, folder string, d time.Duration) error {
	idle, err := c.Idle()
	if err != nil {
		return classify("IDLE on "+folder, "", err)
	}
	t := time.NewTimer(d)
	select {
	case <-wake:
	case <-t.C:
	case <-ctx.Done():
	case <-c.Closed():
	}
	t.Stop()
	// The server must end IDLE promptly; one that does not is stalled.
	_, err = within(c, "end IDLE on "+folder, idleEndTimeout, func() (struct{}, error) {
		if err := idle.Close(); err != nil {
			return struct{}{}, err
		}
		return struct{}{}, idle.Wait()
	})
	if err != nil {
		return classify("IDLE on "+folder, "", err)
	}
	return ctx.Err()
}

// scanVerdicts reads the mail that arrived in folder since mark and settles
// the mails it is a copy of, or a notice about. It returns the number of
// copies found.
func (ch *channel) scanVerdicts(c *imapclient.Client, folder string, mark watchMark, sent []*sentMail) (int, error) {
	if _, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		return 0, classify("open folder "+folder, "", err)
	}
	from := max(mark[folder], 1)
	var set imap.UIDSet
	set.AddRange(from, 0)
	msgs, err := c.Fetch(set, &imap.FetchOptions{UID: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{verdictHeader}}).Collect()
	if err != nil {
		return 0, classify("fetch from "+folder, "", err)
	}
	byID := map[string]*sentMail{}
	byRef := map[string]*sentMail{}
	for _, s := range sent {
		byID[s.msgID], byRef[s.ref] = s, s
	}
	echoed := 0
	listDomain := domainOf(ch.cfg.ListAddress)
	for _, m := range msgs {
		if m.UID < from {
			continue // "UID N:*" always returns the last mail
		}
		mark[folder] = max(mark[folder], m.UID+1)
		h, err := headerOf(m.FindBodySection(verdictHeader))
		if err != nil {
			continue
		}
		id, _ := h.MessageID()
		subj, _ := h.Subject()
		if s := byID[id]; s != nil { // one of ours came back
			if listIDValue(h.Get("List-Id")) == ch.cfg.ListID && !s.done {
				s.done = true
				echoed++
			}
			continue
		}
		if mk := ch.marks.find(subj); mk != "" && byRef[mk] == nil && len(refsKeys(h)) > 0 {
			continue // another member's mail
		}
		// a notice? Only mail from the list's domain, a mailer daemon, or
		// quoting a mark in its subject is downloaded
		fromAddr := ""
		if a := addresses(h, "From"); len(a) > 0 {
			fromAddr = a[0]
		}
		local, _, _ := strings.Cut(fromAddr, "@")
		if !(domainOf(fromAddr) == listDomain || ch.marks.find(subj) != "" ||
			strings.EqualFold(local, "mailer-daemon") || strings.EqualFold(local, "postmaster")) || m.RFC822Size > noticeMaxBytes {
			continue
		}
		var uid imap.UIDSet
		uid.AddNum(m.UID)
		bodies, err := c.Fetch(uid, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{fetchWhole}}).Collect()
		if err != nil {
			return echoed, classify("fetch from "+folder, "", err)
		}
		if len(bodies) == 0 {
			continue
		}
		text := noticeText(bodies[0].FindBodySection(fetchWhole))
		for _, mk := range ch.marks.marks(text) {
			if s := byRef[mk]; s != nil && !s.done {
				s.done = true
				s.err = ch.noticeError(subj, fromAddr, text, s)
			}
		}
	}
	return echoed, nil
}

func headerOf(b []byte) (mail.Header, error) {
	e, err := message.Read(bytes.NewReader(append(bytes.Clone(b), "\r\n"...)))
	if e == nil {
		return mail.Header{}, err
	}
	return mail.Header{Header: e.Header}, nil
}

func domainOf(addr string) string {
	_, d, _ := strings.Cut(addr, "@")
	return strings.ToLower(d)
}

// noticeText is the subject and every decoded text part of a notice,
// including attached messages (a rejection quotes the post).
func noticeText(raw []byte) string {
	e, err := message.Read(bytes.NewReader(raw))
	if e == nil {
		_ = err
		return string(raw)
	}
	var b strings.Builder
	b.WriteString(e.Header.Get("Subject"))
	b.WriteString("\n")
	limit := int64(noticeMaxBytes)
	_ = walkAll(e, &limit, 0, func(h message.Header, r io.Reader) {
		if s, err := (&mail.Header{Header: h}).Subject(); err == nil && s != "" {
			b.WriteString(s + "\n")
		}
		body, _ := io.ReadAll(r)
		b.Write(body)
		b.WriteString("\n")
	})
	return b.String()
}

// walkAll calls f with the header and decoded body of every text part of e,
// and the header of every attached message.
func walkAll(e *message.Entity, limit *int64, depth int, f func(message.Header, io.Reader)) error {
	if depth > 8 || *limit <= 0 {
		return nil
	}
	mt, _, _ := strings.Cut(strings.ToLower(e.Header.Get("Content-Type")), ";")
	mt = strings.TrimSpace(mt)
	if mr := e.MultipartReader(); mr != nil {
		for n := 0; n < 64; n++ {
			part, err := mr.NextPart()
			if err != nil || part == nil {
				return nil
			}
			walkAll(part, limit, depth+1, f)
		}
		return nil
	}
	switch {
	case mt == "message/rfc822" || mt == "text/rfc822-headers":
		inner, _ := message.Read(io.LimitReader(e.Body, *limit))
		if inner != nil {
			f(inner.Header, strings.NewReader(""))
			walkAll(inner, limit, depth+1, f)
		}
	case mt == "" || strings.HasPrefix(mt, "text/") || mt == "message/delivery-status":
		lr := &io.LimitedReader{R: e.Body, N: *limit}
		f(e.Header, lr)
		*limit = lr.N
	}
	return nil
}

// sizeLimitRE finds the limit in Mailman's hold reason.
var sizeLimitRE = regexp.MustCompile(`(?i)larger than the (\d+) KB maximum size`)

// noticeError turns a notice about mail s into the items' error, adapts
// the mail size to a size limit the notice names, and records what happened
// for Health.
func (ch *channel) noticeError(subject, from, text string, s *sentMail) error {
	lower := strings.ToLower(subject + "\n" + text)
	reason := noticeReason(text)
	var what, change string
	code := sdk.CodeNeedsUserAction
	switch {
	case strings.Contains(lower, "moderator") || strings.Contains(lower, "held") || strings.Contains(lower, "approval"):
		what = "held our post for its moderator"
		change = "a list admin must let members post without moderation (Mailman: the member's or the list's default action \"accept\"/\"defer\"), or approve the held posts"
	case strings.Contains(lower, "reject"):
		what = "rejected our post"
		change = "a list admin must let this address post to the list"
	default:
		what = "answered our post with a notice instead of distributing it"
		change = "read the notice in the mailbox and fix what it names on the list"
	}
	if m := sizeLimitRE.FindStringSubmatch(text); m != nil {
		kb, _ := strconv.Atoi(m[1])
		if limit := int64(kb) << 10; kb > 0 && limit >= minMaxMail && limit < ch.mailLimit() {
			ch.setMailLimit(limit)
			change = fmt.Sprintf("remora now sends mails of at most %d bytes on this channel and sends the items again; set max_mail_bytes = %d in the channel (or raise the list's max_message_size) to keep it so", limit, limit)
			code = sdk.CodeUnavailable // retried at once, in smaller mails
		} else {
			change = "raise the list's max_message_size, or lower max_mail_bytes"
		}
	}
	msg := fmt.Sprintf("the list %s %s (notice from %s", ch.cfg.ListAddress, what, from)
	if reason != "" {
		msg += ": " + reason
	}
	msg += fmt.Sprintf("; mail of %d bytes, %d items): %s", s.size, len(s.plan.items), change)
	ch.log.Warn("imap: list did not distribute a post", "list", ch.cfg.ListAddress, "message_id", s.msgID, "reason", reason)
	ch.mu.Lock()
	ch.listProblem = msg
	ch.mu.Unlock()
	ch.count("list_notices", 1)
	return sdk.Errorf(code, "imap: %s", msg)
}

// noticeReason extracts the reason a Mailman notice gives ("…held
// because:\n\n    REASON\n"), else "".
func noticeReason(text string) string {
	_, after, ok := strings.Cut(text, "because:")
	if !ok {
		return ""
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimLeft(after, " \r\n"), "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			break
		}
		lines = append(lines, l)
	}
	r := strings.Join(lines, " ")
	if len(r) > 200 {
		r = r[:200]
	}
	return r
}

// mailLimit is the largest mail sent now: max_mail_bytes, or less after a
// list held a mail for its size.
func (ch *channel) mailLimit() int64 {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.sizeLimit > 0 && ch.sizeLimit < ch.cfg.MaxMailBytes {
		return ch.sizeLimit
	}
	return ch.cfg.MaxMailBytes
}

func (ch *channel) setMailLimit(n int64) {
	ch.mu.Lock()
	ch.sizeLimit = n
	ch.mu.Unlock()
}

// errNoVerdict is the error of items whose mail did not come back through
// the list in time although the list sends members their own posts.
func (ch *channel) errNoVerdict(s *sentMail) error {
	msg := fmt.Sprintf("the list %s did not send our post back within %s (mail of %d bytes, %d items) and no notice came: it may hold or drop posts without telling (Mailman stops its notices after max_autoresponses_per_day); check the list's moderation queue and settings",
		ch.cfg.ListAddress, ch.cfg.ConfirmTimeout.D(), s.size, len(s.plan.items))
	ch.mu.Lock()
	ch.listProblem = msg
	ch.mu.Unlock()
	ch.count("list_silent", 1)
	return sdk.Errorf(sdk.CodeNeedsUserAction, "imap: %s", msg)
}
