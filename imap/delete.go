package imap

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"github.com/remora-p2p/remora/sdk"
)

// Delete removes items from this account's watched folders, as "consumed"
// says: "delete" flags the mail \Deleted and expunges it, "move" files it
// into consumed_folder. When only some items of a batch mail are deleted,
// the mail is rewritten without them (APPENDed anew, the old one removed),
// so the remaining items keep their IDs and may be delivered again (core
// dedupes). Mail sent by SMTP lives in every recipient's mailbox: Delete
// only ever touches this account's copy.
func (ch *channel) Delete(ctx context.Context, req sdk.DeleteRequest) (sdk.DeleteResponse, error) {
	ctx, end, err := ch.life.Begin(ctx) // Close cancels it, and its I/O with it
	if err != nil {
		return sdk.DeleteResponse{}, errClosed
	}
	defer end()
	res := sdk.DeleteResponse{Errors: make([]error, len(req.IDs))}
	if ch.cfg.Consumed == ConsumedKeep {
		for i := range res.Errors {
			res.Errors[i] = sdk.Errorf(sdk.CodeUnsupported, `imap: delete: this channel keeps consumed mail (config "consumed" is "keep")`)
		}
		return res, nil
	}
	drop := map[string]bool{} // keys to remove
	var keys []string
	type uidTarget struct {
		folder string
		uidv   uint32
		uid    imap.UID
	}
	var byUID []uidTarget
	for i, id := range req.IDs {
		if k, ok := keyOf(id); ok {
			if !drop[k] {
				keys = append(keys, k)
			}
			drop[k] = true
			continue
		}
		p, err := parseItemID(id)
		if err != nil {
			res.Errors[i] = sdk.Errorf(sdk.CodeNotFound, "%v", err)
			continue
		}
		byUID = append(byUID, uidTarget{p.Folder, p.UIDValidity, p.UID})
	}
	if len(keys) == 0 && len(byUID) == 0 {
		return res, nil
	}
	err = ch.withPub(ctx, "delete", 0, func(c *imapclient.Client) error {
		for _, folder := range ch.cfg.folders() {
			sel, err := c.Select(folder, nil).Wait()
			if err != nil {
				if sdk.CodeOf(classify("", "", err)) == sdk.CodeNotFound {
					continue
				}
				return classify("open folder "+folder, "", err)
			}
			var whole imap.UIDSet
			for _, t := range byUID {
				if t.folder == folder && t.uidv == sel.UIDValidity {
					whole.AddNum(t.uid)
				}
			}
			var found []imap.UID
			for chunk := range slices.Chunk(keys, 32) {
				data, err := c.UIDSearch(orHeader("References", chunk), nil).Wait()
				if err != nil {
					return classify("search "+folder, "", err)
				}
				found = append(found, data.AllUIDs()...)
			}
			var partial []imap.UID
			if len(found) > 0 {
				sect := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: keyFields, Peek: true}
				msgs, err := c.Fetch(imap.UIDSetNum(found...), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{sect}}).Collect()
				if err != nil {
					return classify("fetch from "+folder, "", err)
				}
				for _, m := range msgs {
					hi, _ := ch.parseHeaderOnly(m.FindBodySection(sect))
					n := 0
					for _, k := range hi.keys {
						if drop[k] {
							n++
						}
					}
					switch {
					case n == 0: // a substring match of another key
					case n == len(hi.keys):
						whole.AddNum(m.UID)
					default:
						partial = append(partial, m.UID)
					}
				}
			}
			// The original of a rewritten mail is expunged even in "move"
			// mode: its remaining items live on in the new copy.
			var rewritten imap.UIDSet
			for _, uid := range partial {
				if err := ch.rewrite(c, folder, uid, drop); err != nil {
					return err
				}
				rewritten.AddNum(uid)
			}
			if len(rewritten) > 0 {
				if err := ch.removeUIDs(c, folder, rewritten, false); err != nil {
					return err
				}
			}
			if len(whole) > 0 {
				if err := ch.removeUIDs(c, folder, whole, ch.cfg.Consumed == ConsumedMove); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		for i := range res.Errors {
			if res.Errors[i] == nil {
				res.Errors[i] = err
			}
		}
	}
	ch.noteErr(err)
	return res, nil
}

// rewrite appends a copy of mail uid in folder without the items whose keys
// are in drop. The caller removes the original.
func (ch *channel) rewrite(c *imapclient.Client, folder string, uid imap.UID, drop map[string]bool) error {
	msgs, err := c.Fetch(imap.UIDSetNum(uid), &imap.FetchOptions{UID: true, InternalDate: true, BodySection: []*imap.FetchItemBodySection{fetchWhole}}).Collect()
	if err != nil {
		return classify("fetch from "+folder, "", err)
	}
	if len(msgs) == 0 {
		return nil // gone meanwhile
	}
	raw := msgs[0].FindBodySection(fetchWhole)
	out, err := rewriteMail(raw, drop, ch.cfg.MaxMailBytes, ch.marks)
	if err != nil {
		ch.log.Warn("imap: cannot rewrite a batch mail; keeping it whole", "folder", folder, "uid", uid, "err", err)
		return nil
	}
	cmd := c.Append(folder, int64(len(out)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen}, Time: msgs[0].InternalDate})
	if _, err := cmd.Write(out); err != nil {
		cmd.Close()
		return classify("append to "+folder, "", err)
	}
	if err := cmd.Close(); err != nil {
		return classify("append to "+folder, "", err)
	}
	if _, err := cmd.Wait(); err != nil {
		return classify("append to "+folder, "", err)
	}
	return nil
}

// rewriteMail returns raw without the items whose keys are in drop, keeping
// the other header fields (List-Id, From, Date) as they were.
func rewriteMail(raw []byte, drop map[string]bool, limit int64, k markKey) ([]byte, error) {
	p, err := parseMail(bytes.NewReader(raw), limit, k)
	if err != nil {
		return nil, err
	}
	var keys []string
	var items [][]byte
	for _, it := range p.Items {
		// a damaged item was never delivered, and cannot be written again
		if it.Damage == "" && it.Key != "" && !drop[it.Key] {
			keys = append(keys, it.Key)
			items = append(items, it.Data)
		}
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("%w: nothing left", errMalformed)
	}
	e, err := message.Read(bytes.NewReader(raw))
	if err != nil && e == nil {
		return nil, err
	}
	h := e.Header.Copy()
	h.Set("Message-Id", "<"+messageID(keys, p.From)+">")
	h.Set("Content-Type", "text/plain; charset=us-ascii")
	h.Set("Content-Transfer-Encoding", "7bit")
	(&mail.Header{Header: h}).SetMsgIDList("References", keysRefs(keys, p.From))
	var buf bytes.Buffer
	if err := textproto.WriteHeader(&buf, h.Header); err != nil {
		return nil, err
	}
	for i, it := range items {
		writeBlock(&buf, p.Mark, i+1, len(items), keys[i], it)
	}
	return buf.Bytes(), nil
}

// removeUIDs moves uids in the selected folder to consumed_folder, or
// deletes them.
func (ch *channel) removeUIDs(c *imapclient.Client, folder string, uids imap.UIDSet, move bool) error {
	if move {
		if _, err := c.Move(uids, ch.cfg.ConsumedFolder).Wait(); err != nil {
			return classify("move consumed mail to "+ch.cfg.ConsumedFolder, "", err)
		}
		return nil
	}
	if err := c.Store(uids, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		return classify("flag consumed mail in "+folder, "", err)
	}
	var err error
	if c.Caps().Has(imap.CapUIDPlus) || c.Caps().Has(imap.CapIMAP4rev2) {
		err = c.UIDExpunge(uids).Close()
	} else {
		err = c.Expunge().Close()
	}
	if err != nil {
		return classify("expunge consumed mail in "+folder, "", err)
	}
	return nil
}
