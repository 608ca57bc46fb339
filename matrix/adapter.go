package matrix

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/remora-p2p/remora/sdk"
)

// Version is the adapter's version.
const Version = "0.1.0"

// Secret names in ConfigureRequest.Secrets.
const (
	SecretPassword    = "password"
	SecretAccessToken = "access_token"
)

// Config is a channel's configuration (ConfigureRequest.Config).
type Config struct {
	// Homeserver is the client-server API base URL, e.g. https://matrix.example.org.
	Homeserver string `json:"homeserver"`
	// User is the full Matrix ID (@alice:example.org). Required for a
	// password login; with an access token it is checked against whoami.
	User string `json:"user,omitempty"`
	// Room is the room ID (!abc:example.org) or alias (#circle:example.org).
	Room string `json:"room"`
	// DeviceName is the display name of the device a password login creates
	// (default none: the homeserver shows the device ID).
	DeviceName string `json:"device_name,omitempty"`
	// Redact makes Delete redact our consumed envelopes (default true).
	Redact *bool `json:"redact,omitempty"`
	// Backfill is how far back a first subscription reads (default 14 days).
	Backfill sdk.Duration `json:"backfill,omitempty"`
	// BoardWindow is how far back Get reads board values published through
	// the log fallback (default 72 h).
	BoardWindow sdk.Duration `json:"board_window,omitempty"`
	// SyncTimeout is the /sync long-poll timeout (default 30 s).
	SyncTimeout sdk.Duration `json:"sync_timeout,omitempty"`
	// SyncMinInterval is the least time between the starts of two /syncs
	// (default 2 s; "1ms" for none). A lone event still arrives at once
	// (the sync waiting for it returns); a burst, such as every member's
	// presence at the start of a round, is fetched in one or two requests
	// instead of one per event, so a member's requests do not grow with
	// the size of the room.
	SyncMinInterval sdk.Duration `json:"sync_min_interval,omitempty"`
}

const (
	defaultBackfill    = 14 * 24 * time.Hour
	defaultBoardWindow = 72 * time.Hour
	defaultSyncTimeout = 30 * time.Second
	defaultSyncMin     = 2 * time.Second
	// idempotencyWindow is how long published keys are remembered in the
	// state dir; the homeserver's own txnId cache is shorter on Dendrite.
	idempotencyWindow = 24 * time.Hour
)

func (c *Config) redact() bool { return c.Redact == nil || *c.Redact }

// parseConfig validates raw; needRoom is false for the room-listing helper.
func parseConfig(raw json.RawMessage, needRoom bool) (Config, error) {
	var c Config
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if len(raw) == 0 {
		return c, sdk.Errorf(sdk.CodeBadConfig, "matrix: config is empty: set homeserver, user and room")
	}
	if err := dec.Decode(&c); err != nil {
		return c, sdk.Errorf(sdk.CodeBadConfig, "matrix: config: %v (fields: homeserver, user, room, device_name, redact, backfill, board_window, sync_timeout, sync_min_interval)", err)
	}
	u, err := url.Parse(c.Homeserver)
	if c.Homeserver == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return c, sdk.Errorf(sdk.CodeBadConfig, "matrix: config: homeserver %q must be an http(s) URL such as https://matrix.example.org", c.Homeserver)
	}
	if c.User != "" {
		if _, _, err := id.UserID(c.User).Parse(); err != nil {
			return c, sdk.Errorf(sdk.CodeBadConfig, "matrix: config: user %q must be a full Matrix ID such as @alice:example.org", c.User)
		}
	}
	if needRoom {
		if !strings.HasPrefix(c.Room, "!") && !strings.HasPrefix(c.Room, "#") || !strings.Contains(c.Room, ":") {
			return c, sdk.Errorf(sdk.CodeBadConfig, "matrix: config: room %q must be a room ID (!id:server) or alias (#name:server); `remora channel add matrix` lists your rooms", c.Room)
		}
	}
	if c.Backfill <= 0 {
		c.Backfill = sdk.Duration(defaultBackfill)
	}
	if c.BoardWindow <= 0 {
		c.BoardWindow = sdk.Duration(defaultBoardWindow)
	}
	if c.SyncTimeout <= 0 {
		c.SyncTimeout = sdk.Duration(defaultSyncTimeout)
	}
	if c.SyncMinInterval <= 0 {
		c.SyncMinInterval = sdk.Duration(defaultSyncMin)
	}
	return c, nil
}

type adapter struct{}

// New returns the Matrix adapter.
func New() sdk.Adapter { return adapter{} }

func defaultCapabilities() sdk.Capabilities {
	return sdk.Capabilities{
		MaxPayload:  MaxPayload,
		Counting:    sdk.CountCodepoints,
		Text:        true,
		Board:       true,
		Push:        true,
		Latency:     sdk.Duration(200 * time.Millisecond),
		Delete:      sdk.DeleteOwn,
		Idempotency: sdk.Idempotency{Level: sdk.IdempotencyWindow, Window: sdk.Duration(idempotencyWindow)},
	}
}

func (adapter) Info() sdk.Info {
	return sdk.Info{
		Name:     "matrix",
		Version:  Version,
		Summary:  "a Matrix room (custom events for the log, state events for the board)",
		Defaults: defaultCapabilities(),
	}
}

func (adapter) Configure(ctx context.Context, req sdk.ConfigureRequest) (sdk.Channel, error) {
	cfg, err := parseConfig(req.Config, true)
	if err != nil {
		return nil, err
	}
	log := logger(req.Logger)
	cli, st, err := login(ctx, cfg, req.Secrets, req.StateDir, log)
	if err != nil {
		return nil, err
	}
	return openChannel(ctx, cfg, cli, st, log)
}

// maxResponse bounds one answer from the homeserver.
const maxResponse = 16 << 20

// newClient returns a mautrix client with our retry policy: mautrix itself
// never retries or sleeps on 429; the adapter does, within the caller's ctx.
func newClient(hs string, user id.UserID, token string) (*mautrix.Client, error) {
	cli, err := mautrix.NewClient(hs, user, token)
	if err != nil {
		return nil, sdk.Errorf(sdk.CodeBadConfig, "matrix: homeserver %q: %v", hs, err)
	}
	cli.Log = zerolog.Nop()
	cli.DefaultHTTPRetries = 0
	cli.IgnoreRateLimit = true
	// mautrix's own User-Agent: the homeserver's logs name the library,
	// which many clients and bots use, not remora.
	// An own transport, so Close ends this channel's connections only.
	// Every answer is bounded: a /sync or /messages page holds at most 100
	// events of at most 64 KiB each; a homeserver (or anyone in its place)
	// that sends more, or never stops, is refused with CodeUnavailable.
	cli.Client = &http.Client{Timeout: 120 * time.Second,
		Transport: &sdk.LimitTransport{Base: http.DefaultTransport.(*http.Transport).Clone(), Max: maxResponse}}
	return cli, nil
}

// checkHomeserver tells "not reachable" from "not a Matrix homeserver".
func checkHomeserver(ctx context.Context, cli *mautrix.Client) error {
	_, err := cli.Versions(ctx)
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if httpStatus(err) == 0 {
		return sdk.Errorf(sdk.CodeUnavailable, "matrix: homeserver %s does not answer (check the URL and that it is up): %w", cli.HomeserverURL, err)
	}
	return sdk.Errorf(sdk.CodeBadConfig, "matrix: %s is not a Matrix homeserver (GET /_matrix/client/versions failed: HTTP %d); use the client API URL, e.g. https://matrix.example.org: %w", cli.HomeserverURL, httpStatus(err), err)
}

// login restores the saved session (same device, same token) or logs in
// with the configured token or password, reusing the saved device ID.
func login(ctx context.Context, cfg Config, secrets map[string]string, stateDir string, log *slog.Logger) (*mautrix.Client, *stateStore, error) {
	st, err := openStore(stateDir)
	if err != nil {
		return nil, nil, err
	}
	cli, err := newClient(cfg.Homeserver, id.UserID(cfg.User), "")
	if err != nil {
		return nil, nil, err
	}
	if err := checkHomeserver(ctx, cli); err != nil {
		return nil, nil, err
	}
	token := secrets[SecretAccessToken]
	password := secrets[SecretPassword]
	sess := st.session()
	if sess.Homeserver != cfg.Homeserver || (cfg.User != "" && sess.UserID != cfg.User) {
		sess = session{} // another account: start over (the device ID belongs to the old one)
	}

	whoami := func(tok string) (*mautrix.RespWhoami, error) {
		cli.AccessToken = tok
		who, err := cli.Whoami(ctx)
		if err != nil {
			return nil, err
		}
		if cfg.User != "" && who.UserID != id.UserID(cfg.User) {
			return nil, sdk.Errorf(sdk.CodeAuthFailed, "matrix: the access token belongs to %s, not to the configured user %s", who.UserID, cfg.User)
		}
		return who, nil
	}

	switch {
	case token != "":
		who, err := whoami(token)
		if err != nil {
			return nil, nil, loginError("access token", err)
		}
		sess = session{Homeserver: cfg.Homeserver, UserID: string(who.UserID), DeviceID: string(who.DeviceID)}
	case password != "":
		if cfg.User == "" {
			return nil, nil, sdk.Errorf(sdk.CodeBadConfig, "matrix: config: user is required with a password")
		}
		if sess.AccessToken != "" {
			who, err := whoami(sess.AccessToken)
			if err == nil {
				cli.UserID, cli.DeviceID = who.UserID, who.DeviceID
				log.Debug("matrix: resumed session", "user", who.UserID, "device", who.DeviceID)
				return cli, st, st.setSession(sess)
			}
			if sdk.CodeOf(classify("whoami", err)) != sdk.CodeAuthFailed {
				return nil, nil, loginError("saved session", err)
			}
			log.Info("matrix: saved access token rejected, logging in again on the same device", "device", sess.DeviceID)
		}
		cli.AccessToken = ""
		resp, err := cli.Login(ctx, &mautrix.ReqLogin{
			Type:                     mautrix.AuthTypePassword,
			Identifier:               mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: cfg.User},
			Password:                 password,
			DeviceID:                 id.DeviceID(sess.DeviceID),
			InitialDeviceDisplayName: cfg.DeviceName,
		})
		if err != nil {
			return nil, nil, loginError("password login", err)
		}
		sess = session{Homeserver: cfg.Homeserver, UserID: string(resp.UserID), DeviceID: string(resp.DeviceID), AccessToken: resp.AccessToken}
		cli.AccessToken = resp.AccessToken
		log.Info("matrix: logged in", "user", resp.UserID, "device", resp.DeviceID)
	default:
		return nil, nil, sdk.Errorf(sdk.CodeBadConfig, "matrix: no credentials: set the secret %q (or %q)", SecretPassword, SecretAccessToken)
	}
	cli.UserID, cli.DeviceID = id.UserID(sess.UserID), id.DeviceID(sess.DeviceID)
	if err := st.setSession(sess); err != nil {
		return nil, nil, err
	}
	return cli, st, nil
}

func loginError(what string, err error) error {
	var se *sdk.Error
	if errors.As(err, &se) && se.Code == sdk.CodeAuthFailed {
		return err
	}
	switch matrixCode(err) {
	case "M_FORBIDDEN", "M_UNKNOWN_TOKEN", "M_MISSING_TOKEN", "M_USER_DEACTIVATED", "M_INVALID_USERNAME":
		return sdk.Errorf(sdk.CodeAuthFailed, "matrix: %s rejected by the homeserver (%s): check the user and the %s/%s secret: %w", what, matrixCode(err), SecretPassword, SecretAccessToken, err)
	}
	return classify(what, err)
}
