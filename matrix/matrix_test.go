package matrix

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/channeltest"
)

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func item(data []byte) sdk.PublishItem {
	return sdk.PublishItem{Data: data, IdempotencyKey: randomName("k")}
}

// subscribe runs Subscribe in the background until the test ends.
func subscribe(t testing.TB, ch sdk.Channel, cursor []byte) (*collector, func() error) {
	t.Helper()
	col := newCollector()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ch.Subscribe(ctx, sdk.SubscribeRequest{Cursor: cursor}, col) }()
	var once sync.Once
	var err error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
				if errors.Is(err, context.Canceled) {
					err = nil
				}
			case <-time.After(10 * time.Second):
				err = errors.New("Subscribe did not return within 10 s of cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return col, stop
}

func wantSet(datas ...[]byte) map[string]bool {
	m := map[string]bool{}
	for _, d := range datas {
		m[string(d)] = true
	}
	return m
}

func TestConfigureErrors(t *testing.T) {
	hs := needHomeserver(t)
	alice, bob, carol := hs.register(t), hs.register(t), hs.register(t)
	room := createRoom(t, alice, []user{bob}, nil)
	private := createRoom(t, carol, nil, nil)
	encrypted := createRoom(t, alice, nil, nil)
	ctx := ctxT(t, time.Minute)
	if _, err := alice.cli.SendStateEvent(ctx, encrypted, event.StateEncryption, "", map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}); err != nil {
		t.Fatal(err)
	}
	notMatrix := httptest.NewServer(http.NotFoundHandler())
	defer notMatrix.Close()

	cfg := func(hsURL string, u user, room string) json.RawMessage {
		b, _ := json.Marshal(map[string]string{"homeserver": hsURL, "user": string(u.id), "room": room})
		return b
	}
	tests := []struct {
		name    string
		config  json.RawMessage
		secrets map[string]string
		code    sdk.Code
		msg     string
	}{
		{"wrong password", cfg(hs.url, alice, string(room)), map[string]string{SecretPassword: "wrong-password"}, sdk.CodeAuthFailed, "password"},
		{"bad access token", cfg(hs.url, alice, string(room)), map[string]string{SecretAccessToken: "syt_bogus"}, sdk.CodeAuthFailed, "token"},
		{"token of another user", cfg(hs.url, bob, string(room)), map[string]string{SecretAccessToken: alice.cli.AccessToken}, sdk.CodeAuthFailed, "belongs to"},
		{"no credentials", cfg(hs.url, alice, string(room)), nil, sdk.CodeBadConfig, "password"},
		{"homeserver down", cfg("http://127.0.0.1:18010", alice, string(room)), map[string]string{SecretPassword: alice.password}, sdk.CodeUnavailable, "does not answer"},
		{"not a homeserver", cfg(notMatrix.URL, alice, string(room)), map[string]string{SecretPassword: alice.password}, sdk.CodeBadConfig, "not a Matrix homeserver"},
		{"room not invited", cfg(hs.url, alice, string(private)), map[string]string{SecretPassword: alice.password}, sdk.CodeNotFound, "invite"},
		{"unknown room", cfg(hs.url, alice, "!nosuchroom:localhost"), map[string]string{SecretPassword: alice.password}, sdk.CodeNotFound, "invite"},
		{"unknown alias", cfg(hs.url, alice, "#nosuchalias:localhost"), map[string]string{SecretPassword: alice.password}, sdk.CodeNotFound, "alias"},
		{"encrypted room", cfg(hs.url, alice, string(encrypted)), map[string]string{SecretPassword: alice.password}, sdk.CodeBadConfig, "encryption"},
		{"bad config", json.RawMessage(`{"homeserver":"matrix.example"}`), nil, sdk.CodeBadConfig, "homeserver"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch, err := New().Configure(ctxT(t, time.Minute), sdk.ConfigureRequest{Config: tt.config, Secrets: tt.secrets, StateDir: t.TempDir(), Logger: testLogger(t)})
			if err == nil {
				ch.Close()
				t.Fatal("Configure succeeded")
			}
			if got := sdk.CodeOf(err); got != tt.code {
				t.Fatalf("code %v, want %v: %v", got, tt.code, err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("message %q does not mention %q", err, tt.msg)
			}
			for _, s := range tt.secrets {
				if s != "" && strings.Contains(err.Error(), s) {
					t.Errorf("error message contains a secret: %v", err)
				}
			}
		})
	}

	t.Run("invited member joins, by alias", func(t *testing.T) {
		alias := id.RoomAlias("#" + randomName("circle") + ":localhost")
		if _, err := alice.cli.CreateAlias(ctx, alias, room); err != nil {
			t.Fatal(err)
		}
		ch, err := hs.open(ctx, t, bob, id.RoomID(alias), t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ch.Close()
		if ch.roomID != room {
			t.Errorf("alias resolved to %s, want %s", ch.roomID, room)
		}
		members, err := alice.cli.JoinedMembers(ctx, room)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := members.Joined[bob.id]; !ok {
			t.Error("bob was invited but did not join")
		}
	})

	t.Run("access token login", func(t *testing.T) {
		ch, err := New().Configure(ctx, sdk.ConfigureRequest{
			Config: cfg(hs.url, alice, string(room)), Secrets: map[string]string{SecretAccessToken: alice.cli.AccessToken}, StateDir: t.TempDir(),
		})
		if err != nil {
			t.Fatal(err)
		}
		defer ch.Close()
		channeltest.Publish(t, ch, item([]byte("via token")))
	})
}

// TestRestartReusesDevice: a restart with the state dir creates no device,
// and the saved session survives the access token being revoked (log in
// again on the same device ID).
func TestRestartReusesDevice(t *testing.T) {
	hs := needHomeserver(t)
	alice := hs.register(t)
	room := createRoom(t, alice, nil, nil)
	dir := t.TempDir()
	ctx := ctxT(t, time.Minute)
	devices := func() []id.DeviceID {
		t.Helper()
		resp, err := alice.cli.GetDevicesInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []id.DeviceID
		for _, d := range resp.Devices {
			ids = append(ids, d.DeviceID)
		}
		return ids
	}
	ch, err := hs.open(ctx, t, alice, room, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := ch.cli.DeviceID
	ch.Close()
	n := len(devices())
	for i := range 3 {
		ch, err := hs.open(ctx, t, alice, room, dir, nil)
		if err != nil {
			t.Fatalf("restart %d: %v", i, err)
		}
		if ch.cli.DeviceID != first {
			t.Errorf("restart %d: device %s, want %s", i, ch.cli.DeviceID, first)
		}
		ch.Close()
	}
	if got := len(devices()); got != n {
		t.Errorf("%d devices after restarts, want %d: %v", got, n, devices())
	}
	st, err := os.Stat(filepath.Join(dir, "matrix-state.json"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v, want 0600 (it holds the access token)", st.Mode().Perm())
	}

	// Revoke the saved token: the next start logs in on the same device.
	saved, err := openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	revoke, _ := mautrix.NewClient(hs.url, alice.id, saved.session().AccessToken)
	if _, err := revoke.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	ch, err = hs.open(ctx, t, alice, room, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if ch.cli.DeviceID != first {
		t.Errorf("after revocation: device %s, want %s", ch.cli.DeviceID, first)
	}
	channeltest.Publish(t, ch, item([]byte("after relogin")))
}

// TestRetriedSendDeduplicated: a send retried after a lost answer (the key
// not recorded yet) reuses its txnId and the homeserver returns the same
// event, even across a restart.
func TestRetriedSendDeduplicated(t *testing.T) {
	hs := needHomeserver(t)
	alice := hs.register(t)
	room := createRoom(t, alice, nil, nil)
	dir := t.TempDir()
	ch := hs.mustOpen(t, alice, room, dir)
	it := item(payloadN(100))
	first := channeltest.Publish(t, ch, it)[0].ID
	ch.Close()
	// Forget the recorded key, as if the process died before saving it.
	st, err := openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	st.s.Published = map[string]published{}
	if err := st.saveLocked(); err != nil {
		t.Fatal(err)
	}
	ch = hs.mustOpen(t, alice, room, dir)
	if again := channeltest.Publish(t, ch, it)[0].ID; again != first {
		t.Fatalf("retried send got event %s, want the homeserver to return %s", again, first)
	}
	col, stop := subscribe(t, ch, nil)
	marker := item(payloadN(10))
	channeltest.Publish(t, ch, marker)
	seen := col.waitFor(t, wantSet(it.Data, marker.Data), time.Minute)
	col.drain(time.Second, seen)
	stop()
	if seen[string(it.Data)] != 1 {
		t.Errorf("retried item delivered %d times, want 1", seen[string(it.Data)])
	}
}

// TestBoardStateEvents: board values are the room's board state events
// keyed by the board key; a member who joins later reads every member's
// value with Get.
func TestBoardStateEvents(t *testing.T) {
	hs := needHomeserver(t)
	alice, bob, carol := hs.register(t), hs.register(t), hs.register(t)
	room := createRoom(t, alice, []user{bob, carol}, &event.PowerLevelsEventContent{
		Users:  map[id.UserID]int{alice.id: 100},
		Events: map[string]int{boardEvents: 0},
	})
	a := hs.mustOpen(t, alice, room, t.TempDir())
	b := hs.mustOpen(t, bob, room, t.TempDir())
	ctx := ctxT(t, time.Minute)
	for _, p := range []struct {
		ch  *channel
		key string
		val string
	}{{a, "presence-a", "a1"}, {a, "presence-a", "a2"}, {b, "presence-b", "b1"}} {
		if err := p.ch.Put(ctx, sdk.PutRequest{Key: p.key, Value: []byte(p.val)}); err != nil {
			t.Fatal(err)
		}
	}
	// It is a state event with the key as state_key.
	var content boardContent
	if err := alice.cli.StateEvent(ctx, room, event.Type{Type: BoardType(string(room)), Class: event.StateEventType}, "presence-b", &content); err != nil {
		t.Fatalf("state event for presence-b: %v", err)
	}
	if content.D != "b1" {
		t.Errorf("state content %+v", content)
	}
	if h := b.Health(ctx); h.State != sdk.HealthOK || h.Counters["board_fallback_puts"] != 0 {
		t.Errorf("bob's health %+v, want ok without fallback", h)
	}
	c := hs.mustOpen(t, carol, room, t.TempDir())
	got, err := c.Get(ctx, sdk.GetRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"presence-a": "a2", "presence-b": "b1"}
	if len(got.Entries) != len(want) {
		t.Fatalf("carol got %d entries, want %d: %+v", len(got.Entries), len(want), got.Entries)
	}
	for _, e := range got.Entries {
		if want[e.Key] != string(e.Value) || e.Time.IsZero() {
			t.Errorf("entry %s = %q at %v, want %q", e.Key, e.Value, e.Time, want[e.Key])
		}
	}
}

// TestBoardWritesPushed: a board write reaches the other members' Subscribe
// as it happens (no wait for their next board read), between the
// envelopes, whose cursor it does not move: resuming from the cursor after
// it delivers the envelopes that follow.
func TestBoardWritesPushed(t *testing.T) {
	hs := needHomeserver(t)
	alice, bob := hs.register(t), hs.register(t)
	room := createRoom(t, alice, []user{bob}, &event.PowerLevelsEventContent{
		Users:  map[id.UserID]int{alice.id: 100},
		Events: map[string]int{boardEvents: 0},
	})
	a := hs.mustOpen(t, alice, room, t.TempDir())
	b := hs.mustOpen(t, bob, room, t.TempDir())
	ctx := ctxT(t, 2*time.Minute)
	col, stop := subscribe(t, b, nil)
	if _, err := a.Publish(ctx, sdk.PublishRequest{Items: []sdk.PublishItem{item([]byte("env-1"))}}); err != nil {
		t.Fatal(err)
	}
	col.waitFor(t, wantSet([]byte("env-1")), time.Minute)
	if err := a.Put(ctx, sdk.PutRequest{Key: "presence-a", Value: []byte("board-a1")}); err != nil {
		t.Fatal(err)
	}
	col.waitFor(t, wantSet([]byte("board-a1")), time.Minute)
	afterBoard := col.cursor
	if h := b.Health(ctx); h.Counters["board_pushed"] != 1 {
		t.Errorf("bob's board_pushed = %d, want 1", h.Counters["board_pushed"])
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Publish(ctx, sdk.PublishRequest{Items: []sdk.PublishItem{item([]byte("env-2"))}}); err != nil {
		t.Fatal(err)
	}
	col2, _ := subscribe(t, b, afterBoard)
	seen := col2.waitFor(t, wantSet([]byte("env-2")), time.Minute)
	col2.drain(2*time.Second, seen)
	if seen["env-1"] != 0 {
		t.Errorf("resuming after the board write delivered env-1 again: %v", seen)
	}
}

// TestBoardPowerFallback: a member below the power level the room requires
// for state events publishes board values through the timeline; both
// members read them; Health says so; AllowBoard (by the admin) lifts it.
func TestBoardPowerFallback(t *testing.T) {
	hs := needHomeserver(t)
	alice, bob := hs.register(t), hs.register(t)
	room := createRoom(t, alice, []user{bob}, &event.PowerLevelsEventContent{
		Users:           map[id.UserID]int{alice.id: 100},
		StateDefaultPtr: ptr(50),
	})
	aDir, bDir := t.TempDir(), t.TempDir()
	a := hs.mustOpen(t, alice, room, aDir)
	b := hs.mustOpen(t, bob, room, bDir)
	ctx := ctxT(t, 2*time.Minute)
	if !b.Capabilities().Board {
		t.Error("Board capability false in fallback mode; documented as true")
	}
	h := b.Health(ctx)
	if h.State != sdk.HealthDegraded || !strings.Contains(h.Message, "power level 0") || !strings.Contains(h.Message, "50") {
		t.Errorf("bob's health: %+v, want degraded naming power levels 0 and 50", h)
	}
	if err := a.Put(ctx, sdk.PutRequest{Key: "ka", Value: []byte("from alice")}); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"bob 1", "bob 2"} {
		if err := b.Put(ctx, sdk.PutRequest{Key: "kb", Value: []byte(v)}); err != nil {
			t.Fatalf("bob's put in fallback: %v", err)
		}
	}
	if err := alice.cli.StateEvent(ctx, room, event.Type{Type: BoardType(string(room)), Class: event.StateEventType}, "kb", &boardContent{}); matrixCode(err) != "M_NOT_FOUND" {
		t.Errorf("bob's value as a state event: %v, want none", err)
	}
	want := map[string]string{"ka": "from alice", "kb": "bob 2"}
	for name, ch := range map[string]*channel{"alice": a, "bob": b} {
		got, err := ch.Get(ctx, sdk.GetRequest{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		m := map[string]string{}
		for _, e := range got.Entries {
			m[e.Key] = string(e.Value)
		}
		if fmt.Sprint(m) != fmt.Sprint(want) {
			t.Errorf("%s reads %v, want %v", name, m, want)
		}
	}
	// A later Get reads only what is new since the previous one (cached
	// scan): a new value and an unchanged one are both right.
	if err := b.Put(ctx, sdk.PutRequest{Key: "kb", Value: []byte("bob 2b")}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		got, err := a.Get(ctx, sdk.GetRequest{Keys: []string{"kb", "ka"}})
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, e := range got.Entries {
			m[e.Key] = string(e.Value)
		}
		if m["kb"] != "bob 2b" || m["ka"] != "from alice" || len(m) != 2 {
			t.Errorf("alice's later Get: %v", m)
		}
	}
	if n := b.Health(ctx).Counters["board_fallback_puts"]; n != 3 {
		t.Errorf("board_fallback_puts = %d, want 3", n)
	}

	// Bob may not raise power levels; alice (admin) may.
	reqFor := func(u user, dir string) sdk.ConfigureRequest {
		return sdk.ConfigureRequest{Config: hs.config(u, room, nil), Secrets: map[string]string{SecretPassword: u.password}, StateDir: dir}
	}
	if err := AllowBoard(ctx, reqFor(bob, bDir), 0); !errors.Is(err, sdk.ErrUnsupported) {
		t.Errorf("AllowBoard by a non-admin: %v, want unsupported", err)
	}
	rooms, err := JoinedRooms(ctx, reqFor(alice, aDir))
	if err != nil {
		t.Fatal(err)
	}
	var r *Room
	for i := range rooms {
		if rooms[i].ID == string(room) {
			r = &rooms[i]
		}
	}
	if r == nil || r.Name != "circle" || r.Members != 2 || r.BoardLevel != 50 || r.OwnLevel != 100 || r.MemberLevel != 0 || r.MembersMayPublish || !r.CanSetPower || r.Encrypted {
		t.Fatalf("JoinedRooms: %+v", rooms)
	}
	if err := AllowBoard(ctx, reqFor(alice, aDir), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, sdk.GetRequest{Keys: []string{"kb"}}); err != nil { // re-reads power levels
		t.Fatal(err)
	}
	if err := b.Put(ctx, sdk.PutRequest{Key: "kb", Value: []byte("bob 3")}); err != nil {
		t.Fatal(err)
	}
	var content boardContent
	if err := alice.cli.StateEvent(ctx, room, event.Type{Type: BoardType(string(room)), Class: event.StateEventType}, "kb", &content); err != nil || content.D != "bob 3" {
		t.Errorf("after AllowBoard bob's value is a state event: %+v, %v", content, err)
	}
	if h := b.Health(ctx); h.State != sdk.HealthOK {
		t.Errorf("after AllowBoard: %+v", h)
	}
}

func ptr[T any](v T) *T { return &v }

// TestBadInput: chat messages, foreign event types, garbage under our type
// and huge events are not delivered; the garbage is counted; every real
// envelope around them arrives once.
func TestBadInput(t *testing.T) {
	hs := needHomeserver(t)
	alice, bob := hs.register(t), hs.register(t)
	room := createRoom(t, alice, []user{bob}, nil)
	a := hs.mustOpen(t, alice, room, t.TempDir())
	b := hs.mustOpen(t, bob, room, t.TempDir())
	garbage := []any{
		map[string]any{"msgtype": "m.text", "body": "looks like chat"},
		map[string]any{"v": 2, "e": []any{map[string]any{"d": "future"}}},
		map[string]any{"v": 1, "e": "not a list"},
		map[string]any{"v": 1, "e": []any{}},
		map[string]any{"v": 1, "e": []any{map[string]any{"d": 42}}},
		map[string]any{"v": 1, "e": []any{map[string]any{"b": "!!not base64"}}},
		map[string]any{"v": 1, "e": []any{map[string]any{"k": strings.Repeat("k", 100), "d": "x"}}},
	}
	oversize := map[string]any{"v": 1, "e": []any{map[string]any{"d": strings.Repeat("A", MaxPayload+100)}}}
	send := func() (want [][]byte) {
		for i, g := range garbage {
			d := payloadN(50)
			channeltest.Publish(t, a, item(d))
			want = append(want, d)
			sendRaw(t, alice, room, typesFor(string(room)).envelope, g)
			sendRaw(t, bob, room, "m.room.message", map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("hello %d", i)})
			sendRaw(t, alice, room, "com.example.other", map[string]any{"v": 1, "e": []any{map[string]any{"d": "foreign"}}})
		}
		sendRaw(t, alice, room, typesFor(string(room)).envelope, oversize)
		sendRaw(t, bob, room, "m.room.message", map[string]any{"msgtype": "m.text", "body": strings.Repeat("huge ", 12000)})
		d := payloadN(50)
		channeltest.Publish(t, a, item(d))
		return append(want, d)
	}
	check := func(name string, col *collector, want [][]byte, stop func() error) {
		seen := col.waitFor(t, wantSet(want...), time.Minute)
		col.drain(time.Second, seen)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if len(seen) != len(want) {
			t.Errorf("%s: %d distinct items delivered, want %d: %v", name, len(seen), len(want), seen)
		}
		for _, d := range want {
			if seen[string(d)] != 1 {
				t.Errorf("%s: envelope delivered %d times", name, seen[string(d)])
			}
		}
	}
	// Live: the subscription is running while the junk arrives.
	col, stop := subscribe(t, b, nil)
	time.Sleep(500 * time.Millisecond)
	want := send()
	check("live", col, want, stop)
	h := b.Health(ctxT(t, time.Minute))
	if h.Counters["ignored_invalid"] != int64(len(garbage)) || h.Counters["ignored_oversize"] != 1 {
		t.Errorf("counters %v, want ignored_invalid=%d ignored_oversize=1", h.Counters, len(garbage))
	}
	// Backfill: a new subscriber reads the same history from a nil cursor.
	c := hs.mustOpen(t, bob, room, t.TempDir())
	col, stop = subscribe(t, c, nil)
	check("backfill", col, want, stop)
	if n := c.Health(ctxT(t, time.Minute)).Counters["ignored_invalid"]; n != int64(len(garbage)) {
		t.Errorf("backfill ignored_invalid = %d, want %d", n, len(garbage))
	}
}

// TestCursorRejected: a cursor this adapter did not write, or one whose
// sync token the homeserver refuses, is CodeCursorInvalid.
func TestCursorRejected(t *testing.T) {
	hs := needHomeserver(t)
	alice := hs.register(t)
	room := createRoom(t, alice, nil, nil)
	a := hs.mustOpen(t, alice, room, t.TempDir())
	for _, c := range [][]byte{[]byte("garbage"), []byte(`{"v":1,"s":"not-a-token"}`)} {
		err := a.Subscribe(ctxT(t, 30*time.Second), sdk.SubscribeRequest{Cursor: c}, newCollector())
		if !errors.Is(err, sdk.ErrCursorInvalid) {
			t.Errorf("cursor %s: %v, want cursor invalid", c, err)
		}
	}
}

// TestGapBackfill: more envelopes than one sync timeline holds arrive while
// the reader is away; resuming from its cursor fills the gap from
// /messages, each exactly once, in order.
func TestGapBackfill(t *testing.T) {
	hs := needHomeserver(t)
	alice, bob := hs.register(t), hs.register(t)
	room := createRoom(t, alice, []user{bob}, nil)
	a := hs.mustOpen(t, alice, room, t.TempDir())
	b := hs.mustOpen(t, bob, room, t.TempDir())
	first := item(payloadN(20))
	channeltest.Publish(t, a, first)
	col, stop := subscribe(t, b, nil)
	col.waitFor(t, wantSet(first.Data), time.Minute)
	stop()
	cursor := col.cursor
	var items []sdk.PublishItem
	for range 250 {
		items = append(items, item(payloadN(40)))
	}
	for i := 0; i < len(items); i += 50 {
		channeltest.Publish(t, a, items[i:i+50]...)
	}
	col, stop = subscribe(t, b, cursor)
	var want [][]byte
	for _, it := range items {
		want = append(want, it.Data)
	}
	seen := col.waitFor(t, wantSet(want...), 2*time.Minute)
	col.drain(time.Second, seen)
	stop()
	if seen[string(first.Data)] != 0 {
		t.Error("an item from before the cursor was delivered again")
	}
	for _, d := range want {
		if seen[string(d)] != 1 {
			t.Fatalf("item delivered %d times", seen[string(d)])
		}
	}
}

// TestHomeserverDown: the homeserver stops mid-stream; Publish fails with
// CodeUnavailable; the subscription retries and, once it is back, resumes
// from its cursor: nothing lost, nothing twice.
func TestHomeserverDown(t *testing.T) {
	hs := needHomeserver(t)
	alice, bob := hs.register(t), hs.register(t)
	room := createRoom(t, alice, []user{bob}, nil)
	a := hs.mustOpen(t, alice, room, t.TempDir())
	b := hs.mustOpen(t, bob, room, t.TempDir())
	var before, after [][]byte
	for range 5 {
		d := payloadN(30)
		channeltest.Publish(t, a, item(d))
		before = append(before, d)
	}
	col, stop := subscribe(t, b, nil)
	seen := col.waitFor(t, wantSet(before...), time.Minute)

	stopStartHomeserver(t, "stop")
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			stopStartHomeserver(t, "start")
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	resp, err := a.Publish(ctx, sdk.PublishRequest{Items: []sdk.PublishItem{item(payloadN(30))}})
	cancel()
	if err != nil || !errors.Is(resp.Results[0].Err, sdk.ErrUnavailable) {
		t.Errorf("publish while down: %v %v, want unavailable", resp.Results, err)
	}
	time.Sleep(2 * time.Second) // the subscription retries meanwhile
	stopStartHomeserver(t, "start")
	restarted = true

	for range 5 {
		d := payloadN(30)
		channeltest.Publish(t, a, item(d))
		after = append(after, d)
	}
	more := col.waitFor(t, wantSet(after...), time.Minute)
	col.drain(time.Second, more)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for k, n := range more {
		seen[k] += n
	}
	for _, d := range append(before, after...) {
		if seen[string(d)] != 1 {
			t.Errorf("item delivered %d times, want 1", seen[string(d)])
		}
	}
	if n := b.Health(ctxT(t, time.Minute)).Counters["sync_errors"]; n == 0 {
		t.Error("the subscription saw no sync error while the homeserver was down")
	}
}

// synapseLimiter is a reverse proxy in front of the rate-limited Dendrite
// that adds what Dendrite v0.13.8 lacks: it does not rate-limit /send,
// /state or /redact (only login, register, join, invite and the like),
// while Synapse does (rc_message, per user). The proxy answers those
// requests over a per-token budget the way Synapse does: 429
// M_LIMIT_EXCEEDED with retry_after_ms. It counts the 429s it sent.
func synapseLimiter(t testing.TB, target string, perSecond float64, burst int) (string, *atomic.Int64) {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	var mu sync.Mutex
	limiters := map[string]*rate.Limiter{}
	var limited atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if r.Method == http.MethodPut && (strings.Contains(p, "/send/") || strings.Contains(p, "/state/") || strings.Contains(p, "/redact/")) {
			mu.Lock()
			l := limiters[r.Header.Get("Authorization")]
			if l == nil {
				l = rate.NewLimiter(rate.Limit(perSecond), burst)
				limiters[r.Header.Get("Authorization")] = l
			}
			res := l.Reserve()
			d := res.Delay()
			if d > 0 {
				res.Cancel()
			}
			mu.Unlock()
			if d > 0 {
				limited.Add(1)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusTooManyRequests)
				fmt.Fprintf(w, `{"errcode":"M_LIMIT_EXCEEDED","error":"Too Many Requests","retry_after_ms":%d}`, d.Milliseconds()+1)
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &limited
}

// TestRateLimitBurst: 500 envelopes published in a burst (10 concurrent
// batches of 50, as core flushes) through a homeserver that rate-limits
// sends (the rate-limited Dendrite behind a Synapse-style limiter: one
// event per 2 s per user, burst 3) all arrive, none twice; the adapter waited
// out the 429s, returned RateLimited for longer waits, and packed envelopes
// into fewer events.
func TestRateLimitBurst(t *testing.T) {
	hs := needRateLimitedHomeserver(t)
	alice, bob := hs.register(t), hs.register(t)
	var room id.RoomID
	for {
		ctx := ctxT(t, time.Minute)
		resp, err := alice.cli.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{bob.id}})
		if matrixCode(err) == "M_LIMIT_EXCEEDED" {
			time.Sleep(time.Second)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		room = resp.RoomID
		break
	}
	proxyURL, limited := synapseLimiter(t, hs.url, 0.5, 3)
	open := func(hs homeserver, u user) *channel {
		for {
			ch, err := hs.open(ctxT(t, time.Minute), t, u, room, t.TempDir(), nil)
			if errors.Is(err, sdk.ErrRateLimited) {
				time.Sleep(time.Second)
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ch.Close() })
			return ch
		}
	}
	a := open(homeserver{url: proxyURL, secret: hs.secret}, alice)
	b := open(hs, bob)
	col, stop := subscribe(t, b, nil)
	var items []sdk.PublishItem
	for range 500 {
		items = append(items, item(payloadN(200)))
	}
	start := time.Now()
	var wg sync.WaitGroup
	var returned atomic.Int64
	errs := make(chan error, len(items))
	for i := 0; i < len(items); i += 50 {
		batch := items[i : i+50]
		wg.Go(func() {
			pending := batch
			for len(pending) > 0 {
				resp, err := a.Publish(ctxT(t, 3*time.Minute), sdk.PublishRequest{Items: pending})
				if err != nil {
					errs <- err
					return
				}
				var retry []sdk.PublishItem
				var wait time.Duration
				for j, r := range resp.Results {
					switch {
					case r.Err == nil:
					case errors.Is(r.Err, sdk.ErrRateLimited):
						returned.Add(1)
						retry = append(retry, pending[j])
						wait = max(wait, sdk.RetryAfterOf(r.Err))
					default:
						errs <- r.Err
					}
				}
				time.Sleep(wait)
				pending = retry
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("publish: %v", err)
	}
	published := time.Since(start)
	var want [][]byte
	for _, it := range items {
		want = append(want, it.Data)
	}
	seen := col.waitFor(t, wantSet(want...), 3*time.Minute)
	col.drain(2*time.Second, seen)
	stop()
	for _, d := range want {
		if seen[string(d)] != 1 {
			t.Fatalf("item delivered %d times, want 1", seen[string(d)])
		}
	}
	h := a.Health(ctxT(t, time.Minute))
	t.Logf("500 envelopes published in %v, all delivered after %v; %d 429s from the limiter, %d items returned as RateLimited and retried by the caller; counters %v",
		published, time.Since(start), limited.Load(), returned.Load(), h.Counters)
	if limited.Load() == 0 || h.Counters["rate_limited"] == 0 || h.Counters["packed_events"] == 0 {
		t.Errorf("counters %v: the burst should have met 429s and packed envelopes", h.Counters)
	}
	if h.Counters["published"] != 500 {
		t.Errorf("published counter %d, want 500", h.Counters["published"])
	}
}

// TestDeletePacked: the parts of a packed event are deleted one by one; the
// event is redacted with the last one.
func TestDeletePacked(t *testing.T) {
	hs := needHomeserver(t)
	alice, bob := hs.register(t), hs.register(t)
	room := createRoom(t, alice, []user{bob}, nil)
	a := hs.mustOpen(t, alice, room, t.TempDir())
	b := hs.mustOpen(t, bob, room, t.TempDir())
	a.noteRateLimit(0) // act as if throttled: pack
	items := []sdk.PublishItem{item(payloadN(10)), item(payloadN(10)), item(payloadN(10))}
	res := channeltest.Publish(t, a, items...)
	ev, _, _ := strings.Cut(res[0].ID, "/")
	for i, r := range res {
		if r.ID != fmt.Sprintf("%s/%d", ev, i) {
			t.Fatalf("IDs %v: want one packed event", res)
		}
	}
	ctx := ctxT(t, time.Minute)
	// Bob may not delete alice's envelopes.
	if resp, _ := b.Delete(ctx, sdk.DeleteRequest{IDs: []string{res[0].ID}}); !errors.Is(resp.Errors[0], sdk.ErrUnsupported) {
		t.Errorf("bob deleting alice's envelope: %v, want unsupported", resp.Errors)
	}
	redacted := func() bool {
		var e rawEvent
		url := a.cli.BuildClientURL("v3", "rooms", room, "event", ev)
		a.cli.DefaultHTTPRetries = 0
		var err error
		for range 5 { // a busy Dendrite may not serve a fresh event yet
			if _, err = a.cli.MakeFullRequest(ctx, mautrix.FullRequest{Method: http.MethodGet, URL: url, ResponseJSON: &e}); err == nil {
				break
			}
			time.Sleep(300 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
		return len(e.Content) <= 2
	}
	for i, r := range res {
		resp, err := a.Delete(ctx, sdk.DeleteRequest{IDs: []string{r.ID, r.ID}})
		if err != nil || resp.Errors[0] != nil || resp.Errors[1] != nil {
			t.Fatalf("delete %s: %v %v", r.ID, resp.Errors, err)
		}
		if got, want := redacted(), i == len(res)-1; got != want {
			t.Fatalf("after deleting %d of %d parts: redacted=%v", i+1, len(res), got)
		}
	}
	col, stop := subscribe(t, b, nil)
	marker := item(payloadN(10))
	channeltest.Publish(t, a, marker)
	seen := col.waitFor(t, wantSet(marker.Data), time.Minute)
	col.drain(time.Second, seen)
	stop()
	if len(seen) != 1 {
		t.Errorf("deleted envelopes delivered: %v", seen)
	}
}

// TestRateLimitLongWait: a retry-after longer than Publish waits itself is
// returned per item as sdk.RateLimited with the homeserver's delay, and the
// items were not sent.
func TestRateLimitLongWait(t *testing.T) {
	hs := needHomeserver(t)
	alice, bob := hs.register(t), hs.register(t)
	room := createRoom(t, alice, []user{bob}, nil)
	proxyURL, limited := synapseLimiter(t, hs.url, 1.0/30, 1) // one event per 30 s
	a, err := homeserver{url: proxyURL, secret: hs.secret}.open(ctxT(t, time.Minute), t, alice, room, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b := hs.mustOpen(t, bob, room, t.TempDir())
	first := item(payloadN(20))
	channeltest.Publish(t, a, first)
	held := []sdk.PublishItem{item(payloadN(20)), item(payloadN(20))}
	resp, err := a.Publish(ctxT(t, time.Minute), sdk.PublishRequest{Items: held})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range resp.Results {
		if !errors.Is(r.Err, sdk.ErrRateLimited) || sdk.RetryAfterOf(r.Err) < 20*time.Second {
			t.Errorf("item %d: %v (retry after %v), want rate limited for ~30 s", i, r.Err, sdk.RetryAfterOf(r.Err))
		}
	}
	if limited.Load() == 0 {
		t.Error("the limiter sent no 429")
	}
	col, stop := subscribe(t, b, nil)
	seen := col.waitFor(t, wantSet(first.Data), time.Minute)
	col.drain(2*time.Second, seen)
	stop()
	for _, it := range held {
		if seen[string(it.Data)] != 0 {
			t.Error("an item reported as rate limited was delivered")
		}
	}
}
