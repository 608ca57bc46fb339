package matrix

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/remora-p2p/remora/matrix/matrixtest"
	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/testenv"
)

// homeserver is a Dendrite started by testenv/svc-matrix.sh.
type homeserver struct {
	url, secret string
}

func needHomeserver(t testing.TB) homeserver {
	t.Helper()
	if testing.Short() {
		t.Skip("matrix: integration test against Dendrite; skipped in -short mode")
	}
	v := testenv.Need(t, "matrix", "REMORA_MATRIX_URL", "REMORA_MATRIX_SECRET")
	return homeserver{url: v[0], secret: v[1]}
}

func needRateLimitedHomeserver(t testing.TB) homeserver {
	t.Helper()
	if testing.Short() {
		t.Skip("matrix: integration test against Dendrite; skipped in -short mode")
	}
	v := testenv.Need(t, "matrix", "REMORA_MATRIX_RL_URL", "REMORA_MATRIX_SECRET")
	return homeserver{url: v[0], secret: v[1]}
}

// user is an account made for one test.
type user struct {
	id       id.UserID
	password string
	cli      *mautrix.Client // its own session, for setting the room up
}

func randomName(prefix string) string { return matrixtest.RandomName(prefix) }

// register makes a fresh user (see matrixtest.Homeserver.Register).
func (hs homeserver) register(t testing.TB) user {
	t.Helper()
	u := matrixtest.Homeserver{URL: hs.url, Secret: hs.secret}.Register(t)
	return user{id: u.ID, password: u.Password, cli: u.Client}
}

// boardEvents stands, in the Events of a power override given to createRoom,
// for the room's board state type, which depends on the room ID.
const boardEvents = "board"

// createRoom makes a room named "circle" owned by u, inviting others. An
// Events entry boardEvents in powerOverride is set for the room's BoardType
// once the room exists.
func createRoom(t testing.TB, u user, others []user, powerOverride *event.PowerLevelsEventContent) id.RoomID {
	t.Helper()
	var invite []matrixtest.User
	for _, o := range others {
		invite = append(invite, matrixtest.User{ID: o.id, Password: o.password, Client: o.cli})
	}
	level, board := 0, false
	if powerOverride != nil {
		level, board = powerOverride.Events[boardEvents]
		delete(powerOverride.Events, boardEvents)
	}
	owner := matrixtest.User{ID: u.id, Password: u.password, Client: u.cli}
	room := matrixtest.CreateRoom(t, owner, "circle", invite, powerOverride)
	if board {
		matrixtest.SetStateLevel(t, owner, room, BoardType(string(room)), level)
	}
	return room
}

// config returns the channel config JSON for u in room.
func (hs homeserver) config(u user, room id.RoomID, extra map[string]any) []byte {
	c := map[string]any{"homeserver": hs.url, "user": string(u.id), "room": string(room)}
	for k, v := range extra {
		c[k] = v
	}
	b, _ := json.Marshal(c)
	return b
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// open configures a channel for u with its password.
func (hs homeserver) open(ctx context.Context, t testing.TB, u user, room id.RoomID, stateDir string, extra map[string]any) (*channel, error) {
	ch, err := New().Configure(ctx, sdk.ConfigureRequest{
		ChannelID: "test",
		Config:    hs.config(u, room, extra),
		Secrets:   map[string]string{SecretPassword: u.password},
		StateDir:  stateDir,
		Logger:    testLogger(t),
	})
	if err != nil {
		return nil, err
	}
	return ch.(*channel), nil
}

func (hs homeserver) mustOpen(t testing.TB, u user, room id.RoomID, stateDir string) *channel {
	t.Helper()
	ch, err := hs.open(context.Background(), t, u, room, stateDir, nil)
	if err != nil {
		t.Fatalf("open %s: %v", u.id, err)
	}
	t.Cleanup(func() { ch.Close() })
	return ch
}

// sendRaw sends any event as u, bypassing the adapter.
func sendRaw(t testing.TB, u user, room id.RoomID, typ string, content any) id.EventID {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := u.cli.SendMessageEvent(ctx, room, event.Type{Type: typ, Class: event.MessageEventType}, content)
	if err != nil {
		t.Fatalf("send %s: %v", typ, err)
	}
	return resp.EventID
}

// instance controls the main Dendrite through svc-matrix.sh, for the
// homeserver-down test.
func stopStartHomeserver(t testing.TB, action string) {
	t.Helper()
	v := testenv.Need(t, "matrix", "REMORA_MATRIX_SCRIPT", "REMORA_MATRIX_DIR")
	out, err := exec.Command("bash", v[0], action+"-instance", v[1]).CombinedOutput()
	if err != nil {
		t.Fatalf("svc-matrix.sh %s-instance: %v: %s", action, err, out)
	}
}

// collector is a sink that records deliveries.
type collector struct {
	ch     chan sdk.Delivery
	cursor []byte
}

func newCollector() *collector { return &collector{ch: make(chan sdk.Delivery, 10000)} }

func (c *collector) Deliver(ctx context.Context, d sdk.Delivery) error {
	select {
	case c.ch <- d:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitFor reads deliveries until every want payload arrived or timeout; it
// returns the count per payload seen (including unwanted ones).
func (c *collector) waitFor(t testing.TB, want map[string]bool, timeout time.Duration) map[string]int {
	t.Helper()
	seen := map[string]int{}
	missing := len(want)
	deadline := time.After(timeout)
	for missing > 0 {
		select {
		case d := <-c.ch:
			seen[string(d.Data)]++
			c.cursor = d.Cursor
			if want[string(d.Data)] && seen[string(d.Data)] == 1 {
				missing--
			}
		case <-deadline:
			t.Fatalf("timeout: %d of %d items missing", missing, len(want))
		}
	}
	return seen
}

// drain collects what else arrives within d.
func (c *collector) drain(d time.Duration, seen map[string]int) {
	deadline := time.After(d)
	for {
		select {
		case dv := <-c.ch:
			seen[string(dv.Data)]++
			c.cursor = dv.Cursor
		case <-deadline:
			return
		}
	}
}

func payloadN(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return []byte(fmt.Sprintf("%x", b))[:n]
}
