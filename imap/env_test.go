package imap

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/testenv"
)

// mailEnv is the mail test system started by testenv/svc-mail.sh.
type mailEnv struct {
	smtp, submission, smtps string
	imap, imaps             string
	ca, otherCA             string
	domain                  string
	dovecotConf, pidFile    string
}

func needMail(t testing.TB) mailEnv {
	t.Helper()
	v := testenv.Need(t, "mail", "REMORA_MAIL_SMTP", "REMORA_MAIL_SUBMISSION", "REMORA_MAIL_SMTPS",
		"REMORA_MAIL_IMAP", "REMORA_MAIL_IMAPS", "REMORA_MAIL_CA", "REMORA_MAIL_OTHER_CA",
		"REMORA_MAIL_DOMAIN", "REMORA_MAIL_DOVECOT_CONF", "REMORA_MAIL_DOVECOT_PIDFILE")
	return mailEnv{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9]}
}

func (m mailEnv) addr(user string) string { return user + "@" + m.domain }

// config returns the JSON config of user in mode, over STARTTLS with the
// test CA; extra fields override.
func (m mailEnv) config(mode, user string, extra map[string]any) json.RawMessage {
	c := map[string]any{
		"mode":     mode,
		"imap":     m.imap,
		"ca_file":  m.ca,
		"username": user,
		"address":  m.addr(user),
	}
	if mode != ModeShared {
		c["smtp"] = m.submission
	}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	b, _ := json.Marshal(c)
	return b
}

func password(user string) map[string]string { return map[string]string{"password": user + "-pw"} }

// open configures a channel and closes it at the end of the test.
func open(t testing.TB, cfg json.RawMessage, user string) sdk.Channel {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ch, err := New().Configure(ctx, sdk.ConfigureRequest{ChannelID: "test", Config: cfg, Secrets: password(user), StateDir: t.TempDir(), Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("configure %s: %v", user, err)
	}
	t.Cleanup(func() { ch.Close() })
	return ch
}

// admin logs user in over plaintext IMAP for test set-up and inspection.
func (m mailEnv) admin(t testing.TB, user string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(m.imap, nil)
	if err != nil {
		t.Fatalf("admin dial: %v", err)
	}
	if err := c.Login(user, user+"-pw").Wait(); err != nil {
		t.Fatalf("admin login %s: %v", user, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// empty expunges every mail in user's folder (creating the folder).
func (m mailEnv) empty(t testing.TB, user, folder string) {
	t.Helper()
	c := m.admin(t, user)
	ensureFolder(c, folder)
	sel, err := c.Select(folder, nil).Wait()
	if err != nil {
		t.Fatalf("select %s/%s: %v", user, folder, err)
	}
	var all imap.SeqSet
	all.AddRange(1, 0)
	if sel.NumMessages > 0 {
		if err := c.Store(all, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
			t.Fatalf("store: %v", err)
		}
		if err := c.Expunge().Close(); err != nil {
			t.Fatalf("expunge: %v", err)
		}
	}
	c.Logout().Wait()
}

// count returns the number of mails in user's folder.
func (m mailEnv) count(t testing.TB, user, folder string) uint32 {
	t.Helper()
	c := m.admin(t, user)
	st, err := c.Status(folder, &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil {
		t.Fatalf("status %s/%s: %v", user, folder, err)
	}
	c.Logout().Wait()
	return *st.NumMessages
}

// appendRaw puts a raw mail into user's folder.
func (m mailEnv) appendRaw(t testing.TB, user, folder string, raw []byte, when time.Time) {
	t.Helper()
	c := m.admin(t, user)
	// a folder that only deliveries create (direct mode's plus address)
	// may not exist yet: an error here is ALREADYEXISTS, or shows below
	c.Create(folder, nil).Wait()
	cmd := c.Append(folder, int64(len(raw)), &imap.AppendOptions{Time: when})
	if _, err := cmd.Write(raw); err != nil {
		t.Fatalf("append: %v", err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatalf("append: %v", err)
	}
	if _, err := cmd.Wait(); err != nil {
		t.Fatalf("append to %s/%s: %v", user, folder, err)
	}
	c.Logout().Wait()
}

// newUIDValidity gives user's folder a new UIDVALIDITY, as a server does
// when it rebuilds a folder.
func (m mailEnv) newUIDValidity(ctx context.Context, user, folder string) error {
	v := fmt.Sprint(time.Now().UnixNano()/1000%2_000_000_000 + 1)
	out, err := exec.CommandContext(ctx, "doveadm", "-c", m.dovecotConf, "mailbox", "update", "-u", user, "--uid-validity", v, folder).CombinedOutput()
	if err != nil {
		return fmt.Errorf("doveadm mailbox update: %v: %s", err, out)
	}
	return nil
}

func randName(prefix string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return prefix + strings.ToLower(strings.NewReplacer("-", "x", "_", "y").Replace(base64.RawURLEncoding.EncodeToString(b)))
}

// collect subscribes ch from cursor until want items with data arrived (or
// timeout) and returns every delivery seen.
func collect(t testing.TB, ch sdk.Channel, cursor []byte, want int, timeout time.Duration) ([]sdk.Delivery, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var got []sdk.Delivery
	n := 0
	err := ch.Subscribe(ctx, sdk.SubscribeRequest{Cursor: cursor}, sdk.SinkFunc(func(_ context.Context, d sdk.Delivery) error {
		got = append(got, d)
		if len(d.Data) > 0 {
			n++
		}
		if n >= want {
			cancel()
		}
		return nil
	}))
	if n >= want {
		return got, nil
	}
	return got, err
}

// mailmanEnv is the Mailman 3 beside mlmmj started by testenv/svc-mailman.sh
// on the same Postfix and Dovecot.
type mailmanEnv struct {
	domain                           string
	kit, circle, decor, dmarc, moder string
}

func needMailman(t testing.TB) mailmanEnv {
	t.Helper()
	v := testenv.Need(t, "mailman", "REMORA_MAILMAN_DOMAIN", "REMORA_MAILMAN_KIT_LIST", "REMORA_MAILMAN_LIST",
		"REMORA_MAILMAN_DECOR_LIST", "REMORA_MAILMAN_DMARC_LIST", "REMORA_MAILMAN_REJECT_LIST")
	return mailmanEnv{v[0], v[1], v[2], v[3], v[4], v[5]}
}

// listManager is one list manager of the test system and its lists.
type listManager struct {
	name        string
	kit, circle string // kit: dave, erin, frank; circle: alice, bob, carol
}

// listManagers returns mlmmj and Mailman 3, the list managers every list
// test runs against.
func listManagers(t testing.TB) []listManager {
	needMail(t)
	mm := needMailman(t)
	return []listManager{
		{name: "mlmmj", kit: "kit@example.test", circle: "circle@example.test"},
		{name: "mailman", kit: mm.kit, circle: mm.circle},
	}
}
