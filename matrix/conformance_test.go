package matrix

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/channeltest"
	"github.com/remora-p2p/remora/sdk/channeltest/faultproxy"
)

// harness gives the kit two fresh users joined to one fresh room per case.
type harness struct {
	hs    homeserver
	proxy *faultproxy.Proxy // between the members and Dendrite
	users []user
	room  id.RoomID
	dirs  []string
}

func newHarness(t *testing.T) channeltest.Harness {
	hs := needHomeserver(t)
	a, b := hs.register(t), hs.register(t)
	room := createRoom(t, a, []user{b}, nil)
	u, err := url.Parse(hs.url)
	if err != nil {
		t.Fatal(err)
	}
	p, err := faultproxy.New(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return &harness{hs: hs, proxy: p, users: []user{a, b}, room: room, dirs: []string{t.TempDir(), t.TempDir()}}
}

// Proxies lets the kit take the homeserver away and cut a publish half way.
func (h *harness) Proxies() []*faultproxy.Proxy { return []*faultproxy.Proxy{h.proxy} }

func (h *harness) Open(ctx context.Context, t *testing.T, a sdk.Adapter, m int) (sdk.Channel, error) {
	u := h.users[m]
	return a.Configure(ctx, sdk.ConfigureRequest{
		ChannelID: "kit",
		Config:    h.hs.config(u, h.room, map[string]any{"homeserver": "http://" + h.proxy.Addr()}),
		Secrets:   map[string]string{SecretPassword: u.password},
		StateDir:  h.dirs[m],
		Logger:    testLogger(t),
	})
}

func (h *harness) Members() int       { return len(h.users) }
func (h *harness) Address(int) string { return "" }

// InvalidateCursor: a homeserver never invalidates a sync token or an event
// ID the way a force-push invalidates a git ref; a token it rejects is
// covered by TestCursorRejected.
func (h *harness) InvalidateCursor(context.Context, *testing.T) error {
	return sdk.Errorf(sdk.CodeUnsupported, "a Matrix homeserver does not invalidate sync tokens; see TestCursorRejected")
}

// InsertBackdated: a room's order is the homeserver's stream order; no
// client (and no appservice, which only changes origin_server_ts) can put
// an event before ones already delivered.
func (h *harness) InsertBackdated(context.Context, *testing.T, int, []byte) error {
	return sdk.Errorf(sdk.CodeUnsupported, "a Matrix room is ordered by the homeserver; nothing can be inserted before delivered events")
}

// Plant sends data as an envelope event from another device of member m
// (the session the harness set the room up with), as any client of that
// account could: it comes after the events already in the room. A
// homeserver that refuses the event as too large (413, M_TOO_LARGE) gives
// CodeTooLarge.
func (h *harness) Plant(ctx context.Context, t *testing.T, m int, data []byte) error {
	content := envelopeContent{V: contentVersion, E: []part{newPart("", data)}}
	_, err := h.users[m].cli.SendMessageEvent(ctx, h.room, event.Type{Type: typesFor(string(h.room)).envelope, Class: event.MessageEventType}, content)
	var herr mautrix.HTTPError
	if errors.As(err, &herr) && (errors.Is(err, mautrix.MTooLarge) || herr.IsStatus(http.StatusRequestEntityTooLarge)) {
		return sdk.Errorf(sdk.CodeTooLarge, "matrix: plant an event of %d bytes: %v", len(data), err)
	}
	return err
}

func TestConformance(t *testing.T) {
	channeltest.Run(t, New(), newHarness, channeltest.Timeout(2*time.Minute), channeltest.Settle(time.Second))
}

// TestConformanceSubprocess runs the kit against the adapter as a go-plugin
// subprocess (this test binary re-executed), over the real wire protocol.
func TestConformanceSubprocess(t *testing.T) {
	channeltest.Run(t, New(), newHarness, channeltest.Self(), channeltest.Timeout(2*time.Minute), channeltest.Settle(time.Second))
}

// StateDir lets the kit lose member m's state (device, pending txnIds) or
// put back an older copy.
func (h *harness) StateDir(m int) string { return h.dirs[m] }
