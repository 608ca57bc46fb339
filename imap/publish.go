package imap

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"

	"github.com/remora-p2p/remora/sdk"
)

var keyRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// keyID is the ID of the item published with idempotency key k: the same
// in every mailbox the mail reaches, across UIDVALIDITY changes and after
// Delete rewrote a batch mail.
func keyID(k string) string { return "k:" + k }

// keyOf is the inverse of keyID.
func keyOf(id string) (string, bool) {
	k, ok := strings.CutPrefix(id, "k:")
	return k, ok && keyRE.MatchString(k)
}

// mailPlan is one mail to send: which request items it carries.
type mailPlan struct {
	to    []string
	items []int
}

// Publish sends the batch as few mails as fit: items to the same recipients
// share a mail up to max_items_per_mail and max_mail_bytes.
func (ch *channel) Publish(ctx context.Context, req sdk.PublishRequest) (sdk.PublishResponse, error) {
	ctx, end, err := ch.life.Begin(ctx) // Close cancels it, and its I/O with it
	if err != nil {
		return sdk.PublishResponse{}, errClosed
	}
	defer end()
	res := sdk.PublishResponse{Results: make([]sdk.PublishResult, len(req.Items))}
	limit := maxPayload(ch.cfg)
	first := map[string]int{} // key -> first index in this batch
	var todo []int
	for i, it := range req.Items {
		if err := ch.checkItem(it, limit); err != nil {
			res.Results[i].Err = err
			continue
		}
		if err := ch.heldErr(it.IdempotencyKey); err != nil {
			res.Results[i].Err = err // not mailed again to a moderation queue
			continue
		}
		if id, ok := ch.recall(it.IdempotencyKey); ok {
			res.Results[i].ID = id
			continue
		}
		if _, dup := first[it.IdempotencyKey]; dup {
			continue // filled from the first copy below
		}
		first[it.IdempotencyKey] = i
		todo = append(todo, i)
	}
	if ch.cfg.Mode == ModeShared && len(todo) > 0 {
		keys := make([]string, len(todo))
		for j, i := range todo {
			keys[j] = req.Items[i].IdempotencyKey
		}
		found, err := ch.findKeys(ctx, keys)
		if err != nil {
			if ctx.Err() == nil {
				ch.noteErr(err) // Health: the server did not answer
			}
			return res, err
		}
		todo = slices.DeleteFunc(todo, func(i int) bool {
			id, ok := found[req.Items[i].IdempotencyKey]
			if ok {
				res.Results[i].ID = id
				ch.remember(req.Items[i].IdempotencyKey, id)
			}
			return ok
		})
	}
	plans := ch.plan(req.Items, todo)
	switch ch.cfg.Mode {
	case ModeShared:
		err = ch.publishAppend(ctx, req.Items, plans, res.Results)
	default:
		var mark watchMark
		confirm := len(plans) > 0 && ch.confirming()
		if confirm {
			if mark, err = ch.mark(ctx); err != nil {
				ch.log.Warn("imap: cannot watch for the list's verdict; publishing without", "err", err)
				confirm = false
			}
		}
		var sent []*sentMail
		sent, err = ch.publishSMTP(ctx, req.Items, plans, res.Results)
		if confirm && len(sent) > 0 && err == nil {
			ch.confirm(ctx, req.Items, mark, sent, res.Results)
		}
	}
	for i, it := range req.Items { // copies of a key repeated in the batch
		if j, ok := first[it.IdempotencyKey]; ok && j != i && res.Results[i].Err == nil && res.Results[i].ID == "" {
			res.Results[i] = res.Results[j]
		}
	}
	return res, err
}

func (ch *channel) checkItem(it sdk.PublishItem, limit int) error {
	if !sdk.ValidKey(it.IdempotencyKey) {
		return fmt.Errorf("imap: %w", sdk.CheckKey("idempotency key", it.IdempotencyKey))
	}
	if len(it.Data) == 0 {
		return sdk.Errorf(sdk.CodeUnsupported, "imap: item %s is empty: mail carries no empty items", it.IdempotencyKey)
	}
	if n := utf8.RuneCount(it.Data); n > limit {
		return sdk.Errorf(sdk.CodeTooLarge, "imap: item %s has %d characters, this channel takes at most %d (max_mail_bytes)", it.IdempotencyKey, n, limit)
	}
	if ch.cfg.Mode == ModeDirect {
		if len(it.To) == 0 {
			return sdk.Errorf(sdk.CodeUnsupported, "imap: item %s has no recipient: direct mode sends to PublishItem.To", it.IdempotencyKey)
		}
		for _, a := range it.To {
			if _, err := mail.ParseAddress(a); err != nil {
				return sdk.Errorf(sdk.CodeUnsupported, "imap: item %s: recipient %q is not a mail address", it.IdempotencyKey, a)
			}
		}
	}
	return nil
}

// plan groups items by recipients and packs them into mails.
func (ch *channel) plan(items []sdk.PublishItem, todo []int) []mailPlan {
	groups := map[string][]int{}
	var order []string
	rcpt := map[string][]string{}
	for _, i := range todo {
		var to []string
		switch ch.cfg.Mode {
		case ModeList:
			to = []string{ch.cfg.ListAddress}
		case ModeShared:
			to = []string{ch.cfg.Address}
		case ModeDirect:
			to = slices.Clone(items[i].To)
			slices.Sort(to)
			to = slices.Compact(to)
		}
		k := strings.Join(to, "\x00")
		if _, ok := groups[k]; !ok {
			order = append(order, k)
			rcpt[k] = to
		}
		groups[k] = append(groups[k], i)
	}
	budget := int(ch.mailLimit()) - mailHeadroom
	var plans []mailPlan
	for _, k := range order {
		cur := mailPlan{to: rcpt[k]}
		size := 0
		for _, i := range groups[k] {
			// the block, and the key again in References
			n := blockSize(items[i].Data, items[i].IdempotencyKey) + len(items[i].IdempotencyKey) + len(idDomain(ch.cfg.Address)) + 4
			if len(cur.items) > 0 && (len(cur.items) >= ch.cfg.MaxItemsPerMail || size+n > budget) {
				plans = append(plans, cur)
				cur, size = mailPlan{to: rcpt[k]}, 0
			}
			cur.items = append(cur.items, i)
			size += n
		}
		plans = append(plans, cur)
	}
	return plans
}

// render builds the mail for a plan.
func (ch *channel) render(items []sdk.PublishItem, p mailPlan) ([]byte, string, error) {
	m := outMail{From: ch.cfg.Address, To: p.to, Date: time.Now()}
	for _, i := range p.items {
		m.Keys = append(m.Keys, items[i].IdempotencyKey)
		m.Items = append(m.Items, items[i].Data)
	}
	return buildMail(m, ch.marks)
}

// confirm waits for the list's verdict on the mails sent and turns holds,
// rejections and (where the list echoes posts) silence into the items'
// errors.
func (ch *channel) confirm(ctx context.Context, items []sdk.PublishItem, mark watchMark, sent []*sentMail, results []sdk.PublishResult) {
	echoed, err := ch.await(ctx, mark, sent)
	if err != nil && ctx.Err() == nil {
		ch.log.Warn("imap: waiting for the list's verdict failed; items count as published", "err", err)
	}
	if echoed > 0 {
		ch.setEcho(echoSeen)
	}
	ch.mu.Lock()
	echo := ch.echo
	ch.mu.Unlock()
	failed := false
	for _, s := range sent {
		if !s.done && err == nil && ctx.Err() == nil {
			if echo == echoSeen {
				s.err = ch.errNoVerdict(s)
			} else {
				// no copy of our posts has ever come back: this account does
				// not get them, so silence says nothing
				ch.setEcho(echoNone)
				ch.mu.Lock()
				ch.echoNote = fmt.Sprintf("own posts do not come back through the list %s to this mailbox (none within %s), so remora cannot notice when the list holds or drops one; "+
					"if the list sends members their own posts, check that the provider does not file them away (docs/channel-mail.md)", ch.cfg.ListAddress, ch.cfg.ConfirmTimeout.D())
				ch.mu.Unlock()
			}
		}
		if s.err == nil {
			continue
		}
		failed = true
		for _, i := range s.plan.items {
			key := items[i].IdempotencyKey
			ch.forget(key)
			results[i] = sdk.PublishResult{Err: s.err}
			if sdk.CodeOf(s.err) != sdk.CodeUnavailable {
				ch.hold(key, s.err)
			}
		}
	}
	if !failed && echoed == len(sent) {
		ch.mu.Lock()
		ch.listProblem = ""
		ch.mu.Unlock()
	}
}

func (ch *channel) publishSMTP(ctx context.Context, items []sdk.PublishItem, plans []mailPlan, results []sdk.PublishResult) ([]*sentMail, error) {
	var sent []*sentMail
	var c *smtp.Client
	defer func() {
		if c != nil {
			c.Quit()
		}
	}()
	for _, p := range plans {
		msg, id, err := ch.render(items, p)
		if err == nil {
			if c == nil {
				c, err = ch.dialSMTP(ctx)
			}
			if err == nil {
				err = ch.sendOne(ctx, c, p.to, msg)
				if err != nil && sdk.CodeOf(err) == sdk.CodeUnavailable {
					c.Close() // the session may be broken: re-dial for the next mail
					c = nil
				}
			}
		}
		ch.noteErr(err)
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		ch.settle(items, p, results, err)
		if err == nil {
			sent = append(sent, &sentMail{plan: p, msgID: id, ref: ch.marks.mark(mailRef(keysOf(items, p))), size: len(msg)})
		}
		if err != nil && c != nil {
			if c.Reset() != nil {
				c.Close()
				c = nil
			}
		}
		if err != nil && sdk.CodeOf(err) == sdk.CodeAuthFailed {
			return sent, err // nothing else will get through
		}
	}
	return sent, nil
}

func keysOf(items []sdk.PublishItem, p mailPlan) []string {
	keys := make([]string, len(p.items))
	for j, i := range p.items {
		keys[j] = items[i].IdempotencyKey
	}
	return keys
}

// settle records the outcome of one mail for the items it carried: err, or
// their IDs, remembered so a retried Publish does not send them again.
func (ch *channel) settle(items []sdk.PublishItem, p mailPlan, results []sdk.PublishResult, err error) {
	for _, i := range p.items {
		if err != nil {
			results[i].Err = err
			continue
		}
		results[i].ID = keyID(items[i].IdempotencyKey)
		ch.remember(items[i].IdempotencyKey, results[i].ID)
	}
}

func (ch *channel) sendOne(ctx context.Context, c *smtp.Client, to []string, msg []byte) error {
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	op := "send mail via " + ch.cfg.SMTP
	if err := c.Mail(ch.cfg.Address, &smtp.MailOptions{Size: int64(len(msg))}); err != nil {
		return classify(op, ch.cfg.SMTPTLS, err)
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return classify(op+" to "+r, ch.cfg.SMTPTLS, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return classify(op, ch.cfg.SMTPTLS, err)
	}
	if _, err := w.Write(msg); err != nil {
		w.Close()
		return classify(op, ch.cfg.SMTPTLS, err)
	}
	if err := w.Close(); err != nil {
		return classify(op, ch.cfg.SMTPTLS, err)
	}
	return nil
}

func (ch *channel) publishAppend(ctx context.Context, items []sdk.PublishItem, plans []mailPlan, results []sdk.PublishResult) error {
	for _, p := range plans {
		msg, _, err := ch.render(items, p)
		if err == nil {
			err = ch.withPub(ctx, "append to "+ch.cfg.Folder, int64(len(msg)), func(c *imapclient.Client) error {
				cmd := c.Append(ch.cfg.Folder, int64(len(msg)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen}})
				if _, err := cmd.Write(msg); err != nil {
					cmd.Close()
					return classify("append to "+ch.cfg.Folder, "", err)
				}
				if err := cmd.Close(); err != nil {
					return classify("append to "+ch.cfg.Folder, "", err)
				}
				if _, err := cmd.Wait(); err != nil {
					return classify("append to "+ch.cfg.Folder, "", err)
				}
				return nil
			})
		}
		ch.noteErr(err)
		ch.settle(items, p, results, err)
		if err != nil && (ctx.Err() != nil || sdk.CodeOf(err) == sdk.CodeAuthFailed) {
			return nil
		}
	}
	return nil
}

// findKeys searches the shared folder for mails that already carry any of
// keys (a retry after a lost reply, or another process with the same key)
// and returns their delivery IDs.
func (ch *channel) findKeys(ctx context.Context, keys []string) (map[string]string, error) {
	found := map[string]string{}
	want := map[string]bool{}
	for _, k := range keys {
		want[k] = true
	}
	err := ch.withPub(ctx, "search "+ch.cfg.Folder+" for keys", 0, func(c *imapclient.Client) error {
		if _, err := c.Select(ch.cfg.Folder, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
			return classify("open folder "+ch.cfg.Folder, "", err)
		}
		for chunk := range slices.Chunk(keys, 32) {
			crit := orHeader("References", chunk)
			data, err := c.UIDSearch(crit, nil).Wait()
			if err != nil {
				return classify("search "+ch.cfg.Folder, "", err)
			}
			uids := data.AllUIDs()
			if len(uids) == 0 {
				continue
			}
			sect := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: keyFields, Peek: true}
			msgs, err := c.Fetch(imap.UIDSetNum(uids...), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{sect}}).Collect()
			if err != nil {
				return classify("fetch from "+ch.cfg.Folder, "", err)
			}
			for _, m := range msgs {
				p, _ := ch.parseHeaderOnly(m.FindBodySection(sect))
				for _, k := range p.keys {
					if want[k] {
						found[k] = keyID(k)
					}
				}
			}
		}
		return nil
	})
	return found, err
}

// orHeader is a SEARCH criterion matching mails whose header field has any
// of values (a substring match, as IMAP defines HEADER).
func orHeader(field string, values []string) *imap.SearchCriteria {
	leaf := func(v string) imap.SearchCriteria {
		return imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: field, Value: v}}}
	}
	c := leaf(values[0])
	for _, v := range values[1:] {
		c = imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{c, leaf(v)}}}
	}
	return &c
}

type headerInfo struct {
	msgID string
	keys  []string
}

// keyFields are the header fields parseHeaderOnly reads.
var keyFields = []string{"Message-ID", "Subject", "References"}

// parseHeaderOnly reads Message-ID and the keys in References from a header
// block; a mail without our mark in its Subject (a reply that references
// ours) has no keys.
func (ch *channel) parseHeaderOnly(b []byte) (headerInfo, error) {
	var hi headerInfo
	if len(b) == 0 {
		return hi, errors.New("empty header")
	}
	h, err := headerOf(b)
	if err != nil && h.Header.Len() == 0 {
		return hi, err
	}
	hi.msgID, _ = h.MessageID()
	if subj, _ := h.Subject(); ch.marks.find(subj) != "" {
		hi.keys = refsKeys(h)
	}
	return hi, nil
}
