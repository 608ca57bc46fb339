package imap

import (
	"context"
	"log/slog"
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
		Defaults: capabilities(Config{Mode: ModeList, Consumed: ConsumedKeep, PollInterval: sdk.Duration(time.Minute), MaxMailBytes: defaultMaxMail}, true),
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
		// APPEND is checked with SEARCH on X-Remora-Keys before every send.
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
	limit := int(c.MaxMailBytes-16<<10) * 3 / 4 * 76 / 78
	return max(1024, min(maxItemBytes, limit))
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
		password:     pw,
		smtpPassword: smtpPW,
		log:          log.With("channel", req.ChannelID, "mode", cfg.Mode),
		closed:       make(chan struct{}),
		counters:     map[string]int64{},
		sent:         map[string]string{},
	}
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
	password     string
	smtpPassword string
	log          *slog.Logger
	push         bool

	closeOnce sync.Once
	closed    chan struct{}

	// pubMu serializes use of pub, the connection for APPEND, SEARCH and
	// Delete; nil after an error until the next use re-dials.
	pubMu sync.Mutex
	pub   *imapclient.Client

	mu       sync.Mutex
	counters map[string]int64
	lastErr  error
	lastOK   time.Time
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
	select {
	case <-ch.closed:
		h.State, h.Message = sdk.HealthDown, "closed"
		return h
	default:
	}
	if ch.lastErr != nil {
		h.State, h.Message = sdk.HealthDegraded, ch.lastErr.Error()
		if c := sdk.CodeOf(ch.lastErr); c == sdk.CodeAuthFailed || c == sdk.CodeBadConfig || c == sdk.CodeNeedsUserAction {
			h.State = sdk.HealthDown
		}
	} else if !ch.push {
		h.Message = "server has no IDLE: polling every " + ch.cfg.PollInterval.D().String()
	}
	return h
}

func (ch *channel) Close() error {
	ch.closeOnce.Do(func() {
		close(ch.closed)
		ch.pubMu.Lock()
		if ch.pub != nil {
			ch.pub.Logout() // sent; not waited for, so Close never blocks on a dead server
			ch.pub.Close()
			ch.pub = nil
		}
		ch.pubMu.Unlock()
	})
	return nil
}

func (ch *channel) isClosed() bool {
	select {
	case <-ch.closed:
		return true
	default:
		return false
	}
}

var errClosed = sdk.Errorf(sdk.CodeUnavailable, "imap: channel closed")

// withPub runs f on the shared command connection, dialing it if needed; a
// failed connection is dropped so the next call re-dials.
func (ch *channel) withPub(ctx context.Context, f func(c *imapclient.Client) error) error {
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
	err := f(c)
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
