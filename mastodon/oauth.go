package mastodon

import (
	"context"

	"net/http"
	"net/url"
	"strings"

	gomasto "github.com/mattn/go-mastodon"

	"github.com/remora-p2p/remora/sdk"
)

// OOB is the out-of-band redirect URI: the server shows the authorization
// code to the user, who pastes it into the terminal.
const OOB = "urn:ietf:wg:oauth:2.0:oob"

// Scopes are the OAuth scopes the channel asks for: read (notifications,
// own statuses, streaming) and write (post and delete statuses).
const Scopes = "read write"

// App is an OAuth application registered on a server. ClientSecret is a
// secret: store it with the channel's secrets, never in its config.
type App struct {
	Server       string `json:"server"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	RedirectURI  string `json:"redirect_uri"`
}

// AppName is the application name `remora channel add mastodon` registers:
// neutral, because the server keeps it with the account's token and may show
// it on posts ("via …"), and nothing on a server should name the software.
const AppName = "sync"

// userAgent is what every request carries: Go's own default, so the
// server's logs do not name remora. It is set explicitly because
// GoToSocial refuses a request without one (418) and go-mastodon sends
// none when its UserAgent is empty.
const userAgent = "Go-http-client/1.1"

// RegisterApp registers an application called name on server
// (POST /api/v1/apps) with the out-of-band redirect.
func RegisterApp(ctx context.Context, server, name string) (App, error) {
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return App{}, badConfig("mastodon: server: %q is not a server URL; write it as https://social.example", server)
	}
	server = strings.TrimRight(server, "/")
	app, err := gomasto.RegisterApp(ctx, &gomasto.AppConfig{
		Client:       http.Client{Transport: &transport{base: http.DefaultTransport, now: timeNow}},
		Server:       server,
		ClientName:   name,
		RedirectURIs: OOB,
		Scopes:       Scopes,
	})
	if err != nil {
		return App{}, classify("register app", err)
	}
	redirect := app.RedirectURI
	if redirect == "" {
		redirect = OOB
	}
	return App{Server: server, ClientID: app.ClientID, ClientSecret: app.ClientSecret, RedirectURI: redirect}, nil
}

// AuthCodeURL is the page the user opens in a browser, logged in to the
// server, to approve remora; the server then shows a code.
func (a App) AuthCodeURL() string {
	q := url.Values{
		"client_id":     {a.ClientID},
		"redirect_uri":  {a.RedirectURI},
		"response_type": {"code"},
		"scope":         {Scopes},
	}
	return a.Server + "/oauth/authorize?" + q.Encode()
}

// ExchangeCode trades the code the user pasted for an access token
// (POST /oauth/token, grant_type=authorization_code).
func (a App) ExchangeCode(ctx context.Context, code string) (string, error) {
	code = strings.TrimSpace(code)
	if code == "" {
		return "", sdk.Errorf(sdk.CodeNeedsUserAction, "mastodon: authorize: paste the code the server showed after you approved remora")
	}
	c := gomasto.NewClient(&gomasto.Config{Server: a.Server, ClientID: a.ClientID, ClientSecret: a.ClientSecret})
	c.UserAgent = userAgent
	c.Client = http.Client{Transport: &transport{base: http.DefaultTransport, now: timeNow}}
	if err := c.GetUserAccessToken(ctx, code, a.RedirectURI); err != nil {
		err = classify("exchange code", err)
		if sdk.CodeOf(err) == sdk.CodeUnknown || sdk.CodeOf(err) == sdk.CodeAuthFailed {
			return "", sdk.Errorf(sdk.CodeAuthFailed, "mastodon: the server refused the code (a code works once and expires in minutes): open %s again and paste the new code: %w", a.AuthCodeURL(), err)
		}
		return "", err
	}
	if c.Config.AccessToken == "" {
		return "", sdk.Errorf(sdk.CodeAuthFailed, "mastodon: the server answered without an access token")
	}
	return c.Config.AccessToken, nil
}
