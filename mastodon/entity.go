package mastodon

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/remora-p2p/remora/sdk"
)

// status is the part of a Mastodon status entity the adapter reads.
// go-mastodon's Status lacks "text", which the adapter needs.
type status struct {
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"created_at"`
	// Content is the rendered HTML.
	Content string `json:"content"`
	// Text is the source the author posted. GoToSocial sends it with every
	// status of its own server; Mastodon only in the answer to a delete.
	Text       string  `json:"text"`
	Visibility string  `json:"visibility"`
	Account    account `json:"account"`
	Reblog     *status `json:"reblog"`
}

type account struct {
	ID       string `json:"id"`
	Username string `json:"username"`
	Acct     string `json:"acct"`
}

// notification is the part of a notification entity the adapter reads.
type notification struct {
	ID     string  `json:"id"`
	Type   string  `json:"type"`
	Status *status `json:"status"`
}

// plain is the status's text as its author wrote it: the source when the
// server sends it (rendering cannot have altered it), else the HTML content
// turned back into text.
func (s *status) plain() string {
	if t := strings.TrimSpace(s.Text); t != "" {
		return t
	}
	return PlainText(s.Content)
}

// postStatus creates a direct status (POST /api/v1/statuses). The text is
// declared text/plain: on a server that renders an account's posts as
// Markdown by default (GoToSocial, glitch-soc), armor such as "-_cd_-"
// would otherwise come out as emphasis and reach the reader altered.
// Servers that know no content_type ignore it.
func (c *channel) postStatus(ctx context.Context, text string) (*status, error) {
	form := url.Values{
		"status":       {text},
		"visibility":   {"direct"},
		"content_type": {"text/plain"},
	}
	var st status
	if err := call(ctx, c.client, http.MethodPost, c.cfg.Server+"/api/v1/statuses", form, &st); err != nil {
		return nil, err
	}
	if !validID(st.ID) {
		return nil, sdk.Errorf(sdk.CodeUnavailable, "mastodon: publish: the server answered without a status ID")
	}
	return &st, nil
}
