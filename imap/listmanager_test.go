package imap

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/channeltest"
)

// armorItems returns n items of size characters of armor-like text.
func armorItems(n, size int) []sdk.PublishItem {
	items := make([]sdk.PublishItem, n)
	for i := range items {
		b := make([]byte, size*3/4+3)
		rand.Read(b)
		items[i] = sdk.PublishItem{Data: []byte(("rmx1." + base64.RawURLEncoding.EncodeToString(b))[:size]), IdempotencyKey: randName("sz")}
	}
	return items
}

// wantAll checks that got holds each of items' data exactly once.
func wantAll(t *testing.T, got []sdk.Delivery, items []sdk.PublishItem) {
	t.Helper()
	seen := map[string]int{}
	for _, d := range got {
		if len(d.Data) > 0 {
			seen[string(d.Data)]++
		}
	}
	for i, it := range items {
		if n := seen[string(it.Data)]; n != 1 {
			t.Errorf("item %d (%d bytes, %.20q…) delivered %d times, want once", i, len(it.Data), it.Data, n)
		}
		delete(seen, string(it.Data))
	}
	for d := range seen {
		t.Errorf("delivered data nobody published: %.60q", d)
	}
}

// TestListDefaultSizeLimit (issue #21, finding 1): 30 items of 1,500
// characters published as one batch with the channel's default settings
// all reach the other member, through mlmmj and through Mailman with its
// default list settings. Before the fix they went out as one 46 KB mail,
// which Mailman holds for its moderator (max_message_size 40 KB): Publish
// reported 30 published, and none arrived.
func TestListDefaultSizeLimit(t *testing.T) {
	env := needMail(t)
	for _, lm := range listManagers(t) {
		t.Run(lm.name, func(t *testing.T) {
			env.empty(t, "dave", "INBOX")
			env.empty(t, "erin", "INBOX")
			list := map[string]any{"list_address": lm.kit}
			dave := open(t, env.config(ModeList, "dave", list), "dave")
			erin := open(t, env.config(ModeList, "erin", list), "erin")
			items := armorItems(30, 1500)
			channeltest.Publish(t, dave, items...)
			got, err := collect(t, erin, nil, len(items), 2*time.Minute)
			if err != nil {
				t.Fatalf("erin's subscription: %v", err)
			}
			wantAll(t, got, items)
			if h := dave.(sdk.Healther).Health(context.Background()); h.State != sdk.HealthOK {
				t.Errorf("dave's channel: %s: %s", h.State, h.Message)
			}
		})
	}
}

// TestMailmanHoldBecomesError (issue #21, finding 1): a channel configured
// for mails larger than the list takes (max_mail_bytes 1 MiB; Mailman holds
// posts over 40 KB) sends the batch as one 46 KB mail; Mailman holds it and
// tells the poster. Publish turns that notice into a per-item error the
// host retries, Health says what happened and what to change, and the
// retry goes out in mails the list takes. Before the fix Publish reported
// every item published and Health stayed ok.
func TestMailmanHoldBecomesError(t *testing.T) {
	env := needMail(t)
	mm := needMailman(t)
	for _, u := range []string{"alice", "bob"} {
		env.empty(t, u, "INBOX")
	}
	cfg := map[string]any{"list_address": mm.circle, "max_mail_bytes": 1 << 20}
	alice := open(t, env.config(ModeList, "alice", cfg), "alice")
	bob := open(t, env.config(ModeList, "bob", cfg), "bob")
	items := armorItems(30, 1500)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	resp, err := alice.Publish(ctx, sdk.PublishRequest{Items: items})
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	for i, r := range resp.Results {
		if r.Err == nil {
			t.Fatalf("item %d reported published (ID %s), but Mailman holds the 46 KB mail for its moderator", i, r.ID)
		}
		if !errors.Is(r.Err, sdk.ErrUnavailable) || !strings.Contains(r.Err.Error(), "held") || !strings.Contains(r.Err.Error(), "40 KB") {
			t.Fatalf("item %d: error %v: want a retryable error saying the list held the post for its 40 KB limit", i, r.Err)
		}
	}
	h := alice.(sdk.Healther).Health(ctx)
	if h.State != sdk.HealthDegraded || !strings.Contains(h.Message, "held") || !strings.Contains(h.Message, "max_mail_bytes") {
		t.Errorf("health %s %q: want degraded, saying the list held the post and what to change", h.State, h.Message)
	}
	t.Logf("per-item error: %v", resp.Results[0].Err)

	// the host's retry: now in mails under the list's limit
	channeltest.Publish(t, alice, items...)
	got, err := collect(t, bob, nil, len(items), 2*time.Minute)
	if err != nil {
		t.Fatalf("bob's subscription: %v", err)
	}
	wantAll(t, got, items)
	if h := alice.(sdk.Healther).Health(ctx); h.State != sdk.HealthOK {
		t.Errorf("after the posts came through: health %s %q, want ok", h.State, h.Message)
	}
}

// TestMailmanRejectBecomesError: a list that rejects our posts (Mailman's
// member action "reject") answers with a rejection notice that quotes the
// post; Publish reports every item failed with an error that needs the
// user, Health says the list rejected it, and a retry is answered at once
// instead of mailing the list again.
func TestMailmanRejectBecomesError(t *testing.T) {
	env := needMail(t)
	mm := needMailman(t)
	env.empty(t, "alice", "INBOX")
	alice := open(t, env.config(ModeList, "alice", map[string]any{"list_address": mm.moder}), "alice")
	items := []sdk.PublishItem{item("rejected-1"), item("rejected-2")}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	resp, err := alice.Publish(ctx, sdk.PublishRequest{Items: items})
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	for i, r := range resp.Results {
		if !errors.Is(r.Err, sdk.ErrNeedsUserAction) || !strings.Contains(r.Err.Error(), "rejected") {
			t.Fatalf("item %d: %v (ID %q): want needs-user-action, the list rejected it", i, r.Err, r.ID)
		}
	}
	if h := alice.(sdk.Healther).Health(ctx); h.State != sdk.HealthDegraded || !strings.Contains(h.Message, "rejected") {
		t.Errorf("health %s %q: want degraded, naming the rejection", h.State, h.Message)
	}
	before := env.count(t, "alice", "INBOX")
	t0 := time.Now()
	resp, err = alice.Publish(ctx, sdk.PublishRequest{Items: items})
	if err != nil || !errors.Is(resp.Results[0].Err, sdk.ErrNeedsUserAction) {
		t.Fatalf("retry: %v %+v: want the same error", err, resp.Results)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Errorf("retry took %v: it must be answered without mailing the list", d)
	}
	if n := env.count(t, "alice", "INBOX"); n != before {
		t.Errorf("INBOX went from %d to %d mails after the retry: the list was mailed again", before, n)
	}
}

// TestMailmanListHeaderAndFooter (issue #21, finding 2): Mailman puts a
// list header right before the body (no blank line) and a non-ASCII footer
// after it, re-encoding the body as base64; every item arrives with its
// exact bytes. Before the fix the header was joined onto the first item,
// which was delivered as good with wrong data.
func TestMailmanListHeaderAndFooter(t *testing.T) {
	env := needMail(t)
	alice, bob := aliceAndBob(t, env, needMailman(t).decor)
	items := append(armorItems(3, 300), item("\x00binary\xff item"), item("short"))
	channeltest.Publish(t, alice, items...)
	got, err := collect(t, bob, nil, len(items), 2*time.Minute)
	if err != nil {
		t.Fatalf("bob's subscription: %v", err)
	}
	wantAll(t, got, items)
	h := bob.(sdk.Healther).Health(context.Background())
	if h.Counters[counterDamaged] != 0 || h.State != sdk.HealthOK {
		t.Errorf("bob's channel: %s %q, counters %v", h.State, h.Message, h.Counters)
	}
	// the list really decorated the mail
	raw := lastMail(t, env, "bob", "INBOX")
	if !strings.Contains(raw, "Content-Transfer-Encoding: base64") {
		t.Errorf("the decor list did not re-encode the body; mail:\n%.600s", raw)
	}
}

// aliceAndBob empties alice's and bob's INBOX and opens their channels on
// the list.
func aliceAndBob(t *testing.T, env mailEnv, list string) (alice, bob sdk.Channel) {
	t.Helper()
	cfg := map[string]any{"list_address": list}
	for _, u := range []string{"alice", "bob"} {
		env.empty(t, u, "INBOX")
	}
	return open(t, env.config(ModeList, "alice", cfg), "alice"), open(t, env.config(ModeList, "bob", cfg), "bob")
}

// lastMail returns the newest mail in user's folder.
func lastMail(t *testing.T, env mailEnv, user, folder string) string {
	t.Helper()
	c := env.admin(t, user)
	sel, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil || sel.NumMessages == 0 {
		t.Fatalf("select %s/%s: %v (%d mails)", user, folder, err, sel.NumMessages)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(sel.NumMessages), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{fetchWhole}}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("fetch: %v", err)
	}
	return string(msgs[0].FindBodySection(fetchWhole))
}

// TestMailmanMungeFrom (issue #21, finding 3): with DMARC mitigation
// (munge_from) Mailman puts the list address in From and the poster in
// Reply-To; the delivery names the poster.
func TestMailmanMungeFrom(t *testing.T) {
	env := needMail(t)
	mm := needMailman(t)
	alice, bob := aliceAndBob(t, env, mm.dmarc)
	channeltest.Publish(t, alice, item("from-alice"))
	got, err := collect(t, bob, nil, 1, 2*time.Minute)
	if err != nil {
		t.Fatalf("bob's subscription: %v", err)
	}
	raw := lastMail(t, env, "bob", "INBOX")
	head, _, _ := strings.Cut(raw, "\r\n\r\n")
	if !strings.Contains(head, "<"+mm.dmarc+">") || !strings.Contains(head, "Reply-To: alice@example.test") {
		t.Fatalf("the list did not munge From; header:\n%s", head)
	}
	for _, d := range got {
		if string(d.Data) == "from-alice" && d.From != "alice@example.test" {
			t.Errorf("Delivery.From = %q, want alice@example.test (the poster, from Reply-To)", d.From)
		}
	}
}

// TestDamagedItemReported: a mail whose second item was altered on the way
// delivers its first item, never the altered one, and Health says items
// arrived damaged and what to check.
func TestDamagedItemReported(t *testing.T) {
	env := needMail(t)
	folder := randName("dmg")
	raw := string(mustBuild(t, []string{"dk1", "dk2"}, "intact-item", "altered-item"))
	raw = "List-Id: circle <circle.example.test>\r\n" + strings.Replace(raw, "altered-item", "altered-itex", 1)
	env.empty(t, "carol", folder) // creates it
	env.appendRaw(t, "carol", folder, []byte(raw), time.Now())
	carol := open(t, env.config(ModeList, "carol", map[string]any{"list_address": "circle@example.test", "folder": folder}), "carol")
	got, err := collect(t, carol, nil, 1, 30*time.Second)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	var data []string
	for _, d := range got {
		if len(d.Data) > 0 {
			data = append(data, string(d.Data))
		}
	}
	if fmt.Sprint(data) != "[intact-item]" {
		t.Fatalf("delivered %q, want only the intact item", data)
	}
	h := carol.(sdk.Healther).Health(context.Background())
	if h.Counters[counterDamaged] != 1 || h.State != sdk.HealthDegraded || !strings.Contains(h.Message, "damaged") {
		t.Errorf("health %s %q counters %v: want degraded, 1 damaged item", h.State, h.Message, h.Counters)
	}
}
