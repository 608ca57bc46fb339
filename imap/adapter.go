package imap

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/remora-p2p/remora/sdk"
)

// Version is the adapter's version.
const Version = "0.1.0"

// New returns the mail adapter.
func New() sdk.Adapter { return adapter{} }

type adapter struct{}

func (adapter) Info() sdk.Info {
	return sdk.Info{
		Name:     "imap",
		Version:  Version,
		Summary:  "mail account or mailing list (IMAP IDLE + SMTP, or a shared IMAP folder)",
		Defaults: capabilities(Config{Mode: ModeList, Consumed: ConsumedKeep, PollInterval: sdk.Duration(time.Minute), MaxMailBytes: defaultListMaxMail}, true),
	}
}

// capabilities are what a channel configured with c offers.
func capabilities(c Config, push bool) sdk.Capabilities {
	caps := sdk.Capabilities{
		MaxPayload:  maxPayload(c),
		Counting:    sdk.CountCodepoints,
		Text:        true,
		Push:        push,
		Addressed:   c.Mode == ModeDirect,
		Delete:      sdk.DeleteNone,
		Idempotency: sdk.Idempotency{Level: sdk.IdempotencyNone},
		Latency:     sdk.Duration(500 * time.Millisecond),
	}
	if !push {
		caps.PollInterval = c.PollInterval
		caps.Latency = c.PollInterval
	}
	if c.Mode == ModeList {
		// the list manager re-sends to each member in turn (75-310 ms each
		// with mlmmj on loopback), and providers may delay more.
		caps.Latency = sdk.Duration(2 * time.Second)
	}
	if c.Mode == ModeShared {
		// APPEND is checked with SEARCH on References before every send.
		caps.Idempotency = sdk.Idempotency{Level: sdk.IdempotencyStrong}
	}
	if c.Consumed != ConsumedKeep {
		caps.Delete = sdk.DeleteOwn
		if c.Mode == ModeShared {
			caps.Delete = sdk.DeleteAny
		}
	}
	return caps
}

// maxPayload is the largest item, in armored characters, that fits one mail
// with room for headers and base64 of a non-armor item.
func maxPayload(c Config) int {
	limit := int(c.MaxMailBytes-mailHeadroom-1<<10) * 3 / 4 * lineWidth / (lineWidth + 2)
	return max(1024, min(maxItemBytes, limit))
}

// markSecret is what the channel's mark key is derived from: the secret the
// host gives every channel (derived from the circle-wide channel ID, which
// every member's configuration shares), else the host's channel name.
func markSecret(req sdk.ConfigureRequest) string {
	if s := req.Secrets[sdk.SecretMarkKey]; s != "" {
		return s
	}
	return "channel:" + req.ChannelID
}

func (adapter) Configure(ctx context.Context, req sdk.ConfigureRequest) (sdk.Channel, error) {
	cfg, err := parseConfig(req.Config)
	if err != nil {
		return nil, err
	}
	pw := req.Secrets["password"]
	if pw == "" {
		return nil, sdk.Errorf(sdk.CodeBadConfig, `imap: secret "password" is missing: store the account's password (or app password) as the channel secret "password"`)
	}
	smtpPW := req.Secrets["smtp_password"]
	if smtpPW == "" {
		smtpPW = pw
	}
	log := req.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ch := &channel{
		cfg:          cfg,
		marks:        newMarkKey(markSecret(req)),
		password:     pw,
		smtpPassword: smtpPW,
		log:          log.With("channel", req.ChannelID, "mode", cfg.Mode),
		counters:     map[string]int64{},
		sent:         map[string]string{},
		held:         map[string]heldItem{},
		stateDir:     req.StateDir,
	}
	ch.loadEcho()
	// Connect once now, so bad credentials, TLS and folders show at once.
	c, err := ch.dialIMAP(ctx, nil)
	if err != nil {
		return nil, err
	}
	ch.push = !cfg.NoIdle && (c.Caps().Has(imap.CapIdle) || c.Caps().Has(imap.CapIMAP4rev2))
	if err := ch.prepareFolders(ctx, c); err != nil {
		c.Close()
		return nil, err
	}
	ch.pub = c
	if cfg.Mode != ModeShared {
		sc, err := ch.dialSMTP(ctx)
		if err != nil {
			ch.Close()
			return nil, err
		}
		sc.Quit()
	}
	return ch, nil
}

// prepareFolders creates folders remora owns and checks the others exist.
func (ch *channel) prepareFolders(ctx context.Context, c *imapclient.Client) error {
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	// The watched folder may be one a Sieve rule or plus-addressing fills
	// only on the first mail: create it (INBOX always exists).
	var own []string
	if !strings.EqualFold(ch.cfg.Folder, "INBOX") {
		own = append(own, ch.cfg.Folder)
	}
	if ch.cfg.Consumed == ConsumedMove {
		own = append(own, ch.cfg.ConsumedFolder)
	}
	for _, f := range own {
		if err := ensureFolder(c, f); err != nil {
			return classify("create folder "+f, "", err)
		}
	}
	if _, err := c.Status(ch.cfg.Folder, &imap.StatusOptions{UIDValidity: true}).Wait(); err != nil {
		return classify("open folder "+ch.cfg.Folder, "", err)
	}
	return nil
}

// ensureFolder creates folder unless it exists.
func ensureFolder(c *imapclient.Client, folder string) error {
	if _, err := c.Status(folder, &imap.StatusOptions{UIDValidity: true}).Wait(); err == nil {
		return nil
	}
	if err := c.Create(folder, nil).Wait(); err != nil {
		// lost a race with another member creating it?
		if _, err2 := c.Status(folder, &imap.StatusOptions{UIDValidity: true}).Wait(); err2 == nil {
			return nil
		}
		return err
	}
	return nil
}

// channel is one configured mail account.
type channel struct {
	cfg          Config
	marks        markKey // keys the marks of this channel's mails
	password     string
	smtpPassword string
	log          *slog.Logger
	push         bool

	// sockets maps each open client to its network connection, so a
	// refused literal hangs up at once (collectBounded); an entry goes when
	// its client's reader ends.
	sockets sync.Map // *imapclient.Client → net.Conn

	// pubMu serializes use of pub, the connection for APPEND, SEARCH and
	// Delete; nil after an error until the next use re-dials.
	pubMu sync.Mutex
	pub   *imapclient.Client

	mu       sync.Mutex
	counters map[string]int64
	lastErr  error
	life     sdk.Lifecycle // Close cancels Publish, Subscribe and Delete in flight
	lastOK   time.Time
	// damage says why the last of our mails read had damaged items; empty
	// once an intact one arrived.
	damage string
	// listProblem says why the list last failed to distribute one of our
	// posts (a hold or rejection notice, no copy back); empty once a post
	// came back through the list.
	listProblem string
	// echoNote says that own posts do not come back (echo = echoNone).
	echoNote string
	// held maps keys of items the list did not distribute to that error,
	// so a retry is not mailed again to a moderation queue at once.
	held map[string]heldItem

	stateDir string
	// echo is what the channel learned about copies of its own posts
	// (verdict.go); guarded by mu.
	echo echoState
	// sizeLimit, when set, is a mail size a list held a mail for;
	// guarded by mu.
	sizeLimit int64

	// watchMu serializes use of watch, the connection Publish uses to wait
	// for the list's verdicts; watchWake gets its EXISTS.
	watchMu   sync.Mutex
	watch     *imapclient.Client
	watchWake chan struct{}
	// sent maps idempotency keys published by this process to their IDs.
	sent      map[string]string
	sentOrder []string
}

const maxSentMemory = 100_000

func (ch *channel) Capabilities() sdk.Capabilities { return capabilities(ch.cfg, ch.push) }

func (ch *channel) count(name string, n int64) {
	ch.mu.Lock()
	ch.counters[name] += n
	ch.mu.Unlock()
}

// noteErr records the outcome of a server round for Health.
func (ch *channel) noteErr(err error) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if err == nil {
		ch.lastErr, ch.lastOK = nil, time.Now()
		return
	}
	ch.lastErr = err
}

// noteDamage counts the damaged items of p and keeps a message for Health.
func (ch *channel) noteDamage(p parsedMail, folder string, uid imap.UID) {
	kinds := map[string]int{}
	for _, it := range p.Items {
		if it.Damage != "" {
			kinds[it.Damage]++
		}
	}
	var what []string
	for k, n := range kinds {
		what = append(what, fmt.Sprintf("%d %s", n, k))
	}
	slices.Sort(what)
	n := p.damaged()
	ch.count(counterDamaged, int64(n))
	msg := fmt.Sprintf("%d of %d items of a mail (folder %s, UID %d, Message-ID %s) arrived damaged (%s) and were not delivered: something on the way changes message bodies; "+
		"the list (or a filter) must pass the body through, adding at most a header, a footer or a new transfer encoding (docs/channel-mail.md)",
		n, len(p.Items), folder, uid, p.MessageID, strings.Join(what, ", "))
	ch.log.Warn("imap: damaged items not delivered", "folder", folder, "uid", uid, "message_id", p.MessageID, "damaged", n, "items", len(p.Items), "kinds", strings.Join(what, ", "))
	ch.mu.Lock()
	ch.damage = msg
	ch.mu.Unlock()
}

// noteIntact clears the damage message: the last mail arrived whole.
func (ch *channel) noteIntact() {
	ch.mu.Lock()
	ch.damage = ""
	ch.mu.Unlock()
}

func (ch *channel) remember(key, id string) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if _, ok := ch.sent[key]; ok {
		return
	}
	ch.sent[key] = id
	ch.sentOrder = append(ch.sentOrder, key)
	if len(ch.sentOrder) > maxSentMemory {
		delete(ch.sent, ch.sentOrder[0])
		ch.sentOrder = ch.sentOrder[1:]
	}
}

func (ch *channel) forget(key string) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	delete(ch.sent, key) // sentOrder keeps the key until it ages out
}

// heldItem is an item the list did not distribute, until when Publish
// answers a retry with err instead of mailing it again.
type heldItem struct {
	err   error
	until time.Time
}

// heldFor is how long a held item's retry is answered without mailing it.
const heldFor = 10 * time.Minute

func (ch *channel) hold(key string, err error) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if len(ch.held) > maxSentMemory {
		clear(ch.held)
	}
	ch.held[key] = heldItem{err: err, until: time.Now().Add(heldFor)}
}

func (ch *channel) heldErr(key string) error {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	h, ok := ch.held[key]
	if !ok {
		return nil
	}
	if time.Now().After(h.until) {
		delete(ch.held, key)
		return nil
	}
	return h.err
}

func (ch *channel) recall(key string) (string, bool) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	id, ok := ch.sent[key]
	return id, ok
}

// Health reports the last error and the counters of skipped mail.
func (ch *channel) Health(ctx context.Context) sdk.Health {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	h := sdk.Health{State: sdk.HealthOK, Counters: map[string]int64{}}
	for k, v := range ch.counters {
		h.Counters[k] = v
	}
	if ch.life.Closed() {
		h.State, h.Message = sdk.HealthDown, "closed"
		return h
	}
	if ch.lastErr != nil {
		h.State, h.Message = sdk.HealthDegraded, ch.lastErr.Error()
		if c := sdk.CodeOf(ch.lastErr); c == sdk.CodeAuthFailed || c == sdk.CodeBadConfig || c == sdk.CodeNeedsUserAction {
			h.State = sdk.HealthDown
		}
	} else if ch.listProblem != "" {
		h.State, h.Message = sdk.HealthDegraded, ch.listProblem
	} else if ch.damage != "" {
		h.State, h.Message = sdk.HealthDegraded, ch.damage
	} else if ch.echoNote != "" {
		h.Message = ch.echoNote
	} else if !ch.push {
		h.Message = "server has no IDLE: polling every " + ch.cfg.PollInterval.D().String()
	}
	return h
}

// Close cancels the calls in flight (their contexts end, which closes
// their connections), waits for them, then logs out and closes the rest.
func (ch *channel) Close() error {
	return ch.life.Close(func() error {
		ch.pubMu.Lock()
		if ch.pub != nil {
			ch.pub.Logout() // sent; not waited for, so Close never blocks on a dead server
			ch.pub.Close()
			ch.pub = nil
		}
		ch.pubMu.Unlock()
		// a Publish waiting for a verdict holds watchMu: close its
		// connection first (under mu), so Close never waits for it
		ch.mu.Lock()
		w := ch.watch
		ch.mu.Unlock()
		if w != nil {
			w.Close()
		}
		ch.watchMu.Lock()
		ch.mu.Lock()
		if ch.watch != nil {
			ch.watch.Close()
			ch.watch = nil
		}
		ch.mu.Unlock()
		ch.watchMu.Unlock()
		return nil
	})
}

func (ch *channel) isClosed() bool { return ch.life.Closed() }

var errClosed = &sdk.Error{Code: sdk.CodeUnavailable, Message: "imap: channel closed", Err: sdk.ErrClosed}

// withPub runs f on the shared command connection, dialing it if needed; a
// failed connection is dropped so the next call re-dials.
func (ch *channel) withPub(ctx context.Context, op string, size int64, f func(c *imapclient.Client) error) error {
	ch.pubMu.Lock()
	defer ch.pubMu.Unlock()
	if ch.isClosed() {
		return errClosed
	}
	if ch.pub == nil {
		c, err := ch.dialIMAP(ctx, nil)
		if err != nil {
			ch.noteErr(err)
			return err
		}
		ch.pub = c
	}
	c := ch.pub
	stop := context.AfterFunc(ctx, func() { c.Close() })
	// A server that stalls or trickles fails the round by its deadline
	// (Timeout, and a second per 64 KiB sent), even when ctx has none.
	err := withinErr(c, op, ch.cfg.Timeout.D()+time.Duration(size/minRate)*time.Second, func() error { return f(c) })
	stop()
	if err != nil {
		select {
		case <-c.Closed():
			ch.pub = nil
		default:
			if sdk.CodeOf(err) == sdk.CodeUnavailable || ctx.Err() != nil {
				c.Close()
				ch.pub = nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return err
}
