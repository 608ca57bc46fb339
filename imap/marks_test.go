package imap

import (
	"bufio"
	"bytes"
	nettextproto "net/textproto"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-message/textproto"

	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/channeltest"
)

// allMails returns every mail in user's folder, oldest first.
func allMails(t *testing.T, env mailEnv, user, folder string) [][]byte {
	t.Helper()
	c := env.admin(t, user)
	sel, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil || sel.NumMessages == 0 {
		t.Fatalf("select %s/%s: %v", user, folder, err)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1, sel.NumMessages), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{fetchWhole}}).Collect()
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	var out [][]byte
	for _, m := range msgs {
		out = append(out, m.FindBodySection(fetchWhole))
	}
	return out
}

// ownFields are the header fields the adapter writes (TestMailHeaders);
// every other field of a delivered mail was added by the mail system.
var ownFields = []string{"From", "To", "Date", "Subject", "Message-Id", "References"}

// forcedFields are the fields of ours the mail system makes alike: the
// account's address, the list's address, a date in seconds.
var forcedFields = []string{"From", "To", "Date"}

// TestNothingConstantAcrossMails (issue #13 item 6): two mails of one
// channel, as they arrive through the real servers, share no header value
// or subject of ours but the addresses and (within a second) the date: no
// header of our own, a Subject that is a per-mail mark only members'
// adapters recognise, per-mail Message-ID and References, blocks framed by
// the mark. Each mode: shared (APPEND: the server adds nothing), direct
// (Postfix), and lists on mlmmj and Mailman 3 (which add their own headers,
// constant per list).
func TestNothingConstantAcrossMails(t *testing.T) {
	env := needMail(t)
	type setup struct {
		name           string
		open           func(t *testing.T) (pub, sub sdk.Channel)
		user, folder   string
		onlyOwnHeaders bool // nothing but our fields arrives
	}
	shared := randName("nc")
	direct := randName("nd")
	cases := []setup{
		{name: "shared", user: "alice", folder: shared, onlyOwnHeaders: true, open: func(t *testing.T) (sdk.Channel, sdk.Channel) {
			cfg := map[string]any{"folder": shared}
			return open(t, env.config(ModeShared, "alice", cfg), "alice"), open(t, env.config(ModeShared, "alice", cfg), "alice")
		}},
		{name: "direct", user: "bob", folder: direct, open: func(t *testing.T) (sdk.Channel, sdk.Channel) {
			cfg := map[string]any{"folder": direct}
			return open(t, env.config(ModeDirect, "alice", cfg), "alice"), open(t, env.config(ModeDirect, "bob", cfg), "bob")
		}},
	}
	for _, lm := range listManagers(t) {
		cases = append(cases, setup{name: lm.name, user: "bob", folder: "INBOX", open: func(t *testing.T) (sdk.Channel, sdk.Channel) {
			return aliceAndBob(t, env, lm.circle)
		}})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.folder != "INBOX" {
				env.empty(t, tc.user, tc.folder) // creates it
			}
			pub, sub := tc.open(t)
			var to []string
			if tc.name == "direct" {
				to = []string{"bob+" + tc.folder + "@" + env.domain}
			}
			// two Publish calls: two mails
			channeltest.Publish(t, pub, item("first-item", to...))
			channeltest.Publish(t, pub, item("second-item", to...))
			if _, err := collect(t, sub, nil, 2, 2*time.Minute); err != nil {
				t.Fatalf("subscribe: %v", err)
			}
			var heads []textproto.Header
			var marks []string
			for _, raw := range allMails(t, env, tc.user, tc.folder) {
				p, err := parseMail(bytes.NewReader(raw), 1<<20, testMarks)
				if err != nil || p.Reason != "" {
					continue // a list's welcome or notice
				}
				h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
				if err != nil {
					t.Fatalf("header: %v", err)
				}
				heads, marks = append(heads, h), append(marks, p.Mark)
			}
			if len(heads) != 2 {
				t.Fatalf("%d mails of ours in %s/%s, want 2", len(heads), tc.user, tc.folder)
			}
			if marks[0] == marks[1] || newMarkKey("channel:other").find(marks[0]) != "" {
				t.Errorf("marks %q: want one per mail, recognised only under the channel's key", marks)
			}
			for f := heads[0].Fields(); f.Next(); {
				key := nettextproto.CanonicalMIMEHeaderKey(f.Key())
				if tc.onlyOwnHeaders && !slices.Contains(ownFields, key) {
					t.Errorf("header field %s arrived, but neither we nor the server writes it", key)
				}
				if !slices.Contains(ownFields, key) || slices.Contains(forcedFields, key) {
					continue // the mail system's
				}
				v := f.Value()
				for _, w := range heads[1].Values(key) {
					if strings.TrimSpace(w) == strings.TrimSpace(v) {
						t.Errorf("both mails carry %s: %s", key, v)
					}
				}
			}
			for _, h := range heads {
				for _, name := range []string{"Subject", "Message-Id", "References"} {
					if h.Get(name) == "" {
						t.Errorf("a mail without %s", name)
					}
				}
			}
		})
	}
}
