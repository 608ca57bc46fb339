package imap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/remora-p2p/remora/sdk"
)

// sinkError marks an error returned by the host's sink: it ends Subscribe
// unchanged instead of causing a reconnect.
type sinkError struct{ err error }

func (e sinkError) Error() string { return e.err.Error() }
func (e sinkError) Unwrap() error { return e.err }

// Subscribe delivers the items of every watched folder from req.Cursor on,
// then waits with IDLE (or polls) for more. A lost connection is re-dialed
// with backoff and resumed from the last delivered cursor; only errors
// retrying cannot fix end it.
func (ch *channel) Subscribe(ctx context.Context, req sdk.SubscribeRequest, sink sdk.Sink) error {
	ctx, end, err := ch.life.Begin(ctx) // Close cancels it, and its I/O with it
	if err != nil {
		return errClosed
	}
	defer end()
	cur, err := decodeCursor(req.Cursor)
	if err != nil {
		return err
	}
	backoff := 500 * time.Millisecond
	for {
		started := time.Now()
		err := ch.follow(ctx, &cur, sink)
		if ctx.Err() != nil {
			if ch.isClosed() {
				return errClosed
			}
			return ctx.Err()
		}
		var se sinkError
		if errors.As(err, &se) {
			return se.err
		}
		switch sdk.CodeOf(err) {
		case sdk.CodeUnavailable, sdk.CodeUnknown:
		default:
			ch.noteErr(err)
			return err // auth, TLS, cursor invalid, missing folder: retrying will not help
		}
		ch.noteErr(err)
		if time.Since(started) > time.Minute {
			backoff = 500 * time.Millisecond
		}
		ch.log.Warn("imap: subscription interrupted, reconnecting", "err", err, "in", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// follow runs one connection: catch up on every folder, then IDLE on the
// main folder, polling the extra folders every poll_interval.
func (ch *channel) follow(ctx context.Context, cur *cursor, sink sdk.Sink) error {
	wake := make(chan struct{}, 1)
	handler := &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				select {
				case wake <- struct{}{}:
				default:
				}
			}
		},
	}
	c, err := ch.dialIMAP(ctx, handler)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	push := !ch.cfg.NoIdle && (c.Caps().Has(imap.CapIdle) || c.Caps().Has(imap.CapIMAP4rev2))

	main := ch.cfg.Folder
	for _, f := range ch.cfg.ExtraFolders {
		if err := ch.catchUp(ctx, c, cur, f, sink); err != nil {
			if sdk.CodeOf(err) == sdk.CodeNotFound {
				ch.log.Warn("imap: extra folder missing, skipped", "folder", f)
				continue
			}
			return err
		}
	}
	if err := ch.catchUp(ctx, c, cur, main, sink); err != nil {
		return err
	}
	ch.noteErr(nil)
	lastExtra, lastDrain := time.Now(), time.Now()
	for {
		wait := ch.cfg.IdleRestart.D()
		if !push || len(ch.cfg.ExtraFolders) > 0 {
			wait = min(wait, ch.cfg.PollInterval.D())
		}
		if push {
			if err := idleUntil(ctx, c, wake, main, wait); err != nil {
				return err
			}
			// More of a burst is on its way: read it in one go.
			if err := sdk.Sleep(ctx, ch.cfg.DrainInterval.D()-time.Since(lastDrain)); err != nil {
				return err
			}
		} else {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
			}
			if ctx.Err() == nil {
				if _, err := within(c, "NOOP", ch.cfg.Timeout.D(), func() (struct{}, error) { return struct{}{}, c.Noop().Wait() }); err != nil {
					return classify("NOOP", "", err)
				}
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if len(ch.cfg.ExtraFolders) > 0 && time.Since(lastExtra) >= ch.cfg.PollInterval.D() {
			lastExtra = time.Now()
			moved := false
			for _, f := range ch.cfg.ExtraFolders {
				changed, err := ch.extraChanged(c, cur, f)
				if err != nil {
					if sdk.CodeOf(err) == sdk.CodeNotFound {
						continue
					}
					return err
				}
				if changed {
					moved = true
					if err := ch.catchUp(ctx, c, cur, f, sink); err != nil {
						return err
					}
				}
			}
			if moved {
				if err := ch.catchUp(ctx, c, cur, main, sink); err != nil {
					return err
				}
				continue
			}
		}
		lastDrain = time.Now()
		if push {
			// One pass: mail that arrives meanwhile ends the next IDLE at
			// once (its EXISTS), so asking again until a pass finds
			// nothing cost a FETCH per wake for nothing.
			if _, err := ch.drainPass(ctx, c, cur, main, sink); err != nil {
				return err
			}
			continue
		}
		if err := ch.drain(ctx, c, cur, main, sink); err != nil {
			return err
		}
	}
}

// extraChanged reports with STATUS whether folder has mail past the cursor.
func (ch *channel) extraChanged(c *imapclient.Client, cur *cursor, folder string) (bool, error) {
	st, err := within(c, "status of "+folder, ch.cfg.Timeout.D(), c.Status(folder, &imap.StatusOptions{UIDNext: true, UIDValidity: true}).Wait)
	if err != nil {
		return false, classify("status of "+folder, "", err)
	}
	fc := cur.folder(folder)
	return fc == nil || fc.UIDValidity != st.UIDValidity || uint32(st.UIDNext) > fc.UID, nil
}

// catchUp selects folder, checks its UIDVALIDITY against the cursor and
// delivers everything past it.
func (ch *channel) catchUp(ctx context.Context, c *imapclient.Client, cur *cursor, folder string, sink sdk.Sink) error {
	sel, err := within(c, "open folder "+folder, ch.cfg.Timeout.D(), c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait)
	if err != nil {
		return classify("open folder "+folder, "", err)
	}
	fc := cur.folder(folder)
	if fc == nil {
		cur.set(folderCursor{Name: folder, UIDValidity: sel.UIDValidity, UID: 1})
	} else if fc.UIDValidity != sel.UIDValidity {
		return sdk.Errorf(sdk.CodeCursorInvalid, "imap: folder %s was rebuilt by the server (UIDVALIDITY %d, cursor has %d): rescanning it from the oldest mail", folder, sel.UIDValidity, fc.UIDValidity)
	}
	if sel.UIDNext != 0 && uint32(sel.UIDNext) <= cur.folder(folder).UID {
		return nil
	}
	return ch.drain(ctx, c, cur, folder, sink)
}

// fetchHeader is what the first FETCH asks for: enough to skip foreign or
// huge mail without downloading it.
var fetchHeader = &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject"}, Peek: true}

// fetchWhole is the whole mail, without setting \Seen.
var fetchWhole = &imap.FetchItemBodySection{Peek: true}

// drain delivers every mail of the selected folder past the cursor,
// including mail that arrives while it does.
func (ch *channel) drain(ctx context.Context, c *imapclient.Client, cur *cursor, folder string, sink sdk.Sink) error {
	for {
		n, err := ch.drainPass(ctx, c, cur, folder, sink)
		if err != nil || n == 0 {
			return err
		}
	}
}

// drainPass delivers the mail of the selected folder past the cursor, as
// one FETCH finds it, and returns how many mails it found.
func (ch *channel) drainPass(ctx context.Context, c *imapclient.Client, cur *cursor, folder string, sink sdk.Sink) (int, error) {
	fc := *cur.folder(folder)
	var set imap.UIDSet
	set.AddRange(imap.UID(fc.UID), 0)
	op := "fetch from " + folder
	metas, err := within(c, op, ch.cfg.Timeout.D(), func() ([]*imapclient.FetchMessageBuffer, error) {
		return ch.collectBounded(c, op, c.Fetch(set, &imap.FetchOptions{
			UID: true, RFC822Size: true, InternalDate: true,
			BodySection: []*imap.FetchItemBodySection{fetchHeader},
		}), headerLimit)
	})
	if err != nil {
		return 0, err
	}
	metas = slices.DeleteFunc(metas, func(m *imapclient.FetchMessageBuffer) bool { return uint32(m.UID) < fc.UID })
	if len(metas) == 0 {
		return 0, nil
	}
	slices.SortFunc(metas, func(a, b *imapclient.FetchMessageBuffer) int { return int(a.UID) - int(b.UID) })
	// Download candidates in groups of about 8 MiB.
	for start := 0; start < len(metas); {
		end, size := start, int64(0)
		var want imap.UIDSet
		for end < len(metas) && (end == start || size < 8<<20) {
			m := metas[end]
			if ch.candidate(m) {
				want.AddNum(m.UID)
				size += m.RFC822Size
			}
			end++
		}
		bodies := map[imap.UID][]byte{}
		if len(want) > 0 {
			msgs, err := within(c, op, ch.cfg.fetchDeadline(size), func() ([]*imapclient.FetchMessageBuffer, error) {
				return ch.collectBounded(c, op, c.Fetch(want, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{fetchWhole}}), ch.cfg.readLimit())
			})
			if err != nil {
				return 0, err
			}
			for _, m := range msgs {
				bodies[m.UID] = m.FindBodySection(fetchWhole)
			}
		}
		// Runs of mail that is not ours move the cursor with one empty
		// delivery (or with the next item's), not one per mail.
		var skipped *imapclient.FetchMessageBuffer
		for _, m := range metas[start:end] {
			ours, err := ch.deliverMail(ctx, cur, folder, m, bodies[m.UID], sink)
			if err != nil {
				return 0, err
			}
			skipped = m
			if ours {
				skipped = nil
			}
		}
		if skipped != nil {
			fc := cur.folder(folder)
			d := sdk.Delivery{ID: itemID(folder, fc.UIDValidity, skipped.UID, 0, 1), Cursor: cur.encode(), Time: skipped.InternalDate}
			if err := ch.deliver(ctx, sink, d); err != nil {
				return 0, err
			}
		}
		start = end
	}
	return len(metas), nil
}

// candidate reports whether m may be ours and is small enough to download.
func (ch *channel) candidate(m *imapclient.FetchMessageBuffer) bool {
	if m.RFC822Size > ch.cfg.readLimit() {
		return false
	}
	// decoded: a list's non-ASCII subject tag makes the whole Subject an
	// RFC 2047 encoded word
	h, _ := headerOf(m.FindBodySection(fetchHeader))
	subj, _ := h.Subject()
	return ch.marks.find(subj) != ""
}

// deliverMail hands the items of one mail to the sink and reports true; a
// mail that is not ours is counted and only moves cur past it (false).
func (ch *channel) deliverMail(ctx context.Context, cur *cursor, folder string, m *imapclient.FetchMessageBuffer, body []byte, sink sdk.Sink) (bool, error) {
	fc := *cur.folder(folder)
	var p parsedMail
	switch {
	case m.RFC822Size > ch.cfg.readLimit():
		p.Reason = reasonTooLarge
	case body == nil:
		p.Reason = reasonForeign
	default:
		var err error
		p, err = parseMail(bytes.NewReader(body), ch.cfg.readLimit(), ch.marks)
		if err != nil {
			ch.log.Debug("imap: unreadable mail skipped", "folder", folder, "uid", m.UID, "err", err)
		}
		if p.Reason == "" && ch.cfg.Mode == ModeList && p.ListID != ch.cfg.ListID {
			p.Reason = reasonNotList
		}
	}
	next := fc
	next.UID, next.Index = uint32(m.UID)+1, 0
	if p.Reason != "" {
		ch.count(p.Reason, 1)
		cur.set(next)
		return false, nil
	}
	from := 0
	if fc.UID == uint32(m.UID) {
		from = min(fc.Index, len(p.Items))
	}
	lastGood := -1
	for i := from; i < len(p.Items); i++ {
		if p.Items[i].Damage == "" {
			lastGood = i
		}
	}
	if bad := p.damaged(); bad > 0 && from == 0 {
		ch.noteDamage(p, folder, m.UID)
	} else if bad == 0 && from == 0 {
		ch.noteIntact()
	}
	sender := ch.cfg.sender(p)
	for i := from; i <= lastGood; i++ {
		it := p.Items[i]
		if it.Damage != "" {
			continue
		}
		pos := fc
		pos.UID, pos.Index = uint32(m.UID), i+1
		if i == lastGood {
			pos = next
		}
		id := itemID(folder, fc.UIDValidity, m.UID, i, len(p.Items))
		if keyRE.MatchString(it.Key) {
			id = keyID(it.Key)
		}
		cur.set(pos)
		d := sdk.Delivery{ID: id, Data: it.Data, Cursor: cur.encode(), From: sender, Time: m.InternalDate}
		if err := ch.deliver(ctx, sink, d); err != nil {
			return false, err
		}
	}
	ch.count("delivered_mails", 1)
	if lastGood < 0 { // nothing (left) to deliver: like a skip
		cur.set(next)
		return false, nil
	}
	return true, nil
}

func (ch *channel) deliver(ctx context.Context, sink sdk.Sink, d sdk.Delivery) error {
	if err := sink.Deliver(ctx, d); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return sinkError{fmt.Errorf("imap: deliver %s: %w", d.ID, err)}
	}
	return nil
}
