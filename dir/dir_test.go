package dir_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/remora-p2p/remora/dir"
	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/channeltest"
)

func configure(t *testing.T, cfg map[string]any, state string) (sdk.Channel, error) {
	t.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return dir.New().Configure(t.Context(), sdk.ConfigureRequest{ChannelID: "test", Config: raw, StateDir: state})
}

func mustConfigure(t *testing.T, cfg map[string]any, state string) sdk.Channel {
	t.Helper()
	ch, err := configure(t, cfg, state)
	if err != nil {
		t.Fatalf("configure: %v", err)
	}
	t.Cleanup(func() { ch.Close() })
	return ch
}

func TestConfigErrors(t *testing.T) {
	folder := t.TempDir()
	file := filepath.Join(folder, "a-file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		config string
		want   *sdk.Error
		field  string // the message must name it
	}{
		{"empty", ``, sdk.ErrBadConfig, "path"},
		{"not JSON", `{"path": `, sdk.ErrBadConfig, "JSON"},
		{"not an object", `[1]`, sdk.ErrBadConfig, "config"},
		{"unknown field", `{"path": "` + folder + `", "pth": "x"}`, sdk.ErrBadConfig, "pth"},
		{"no path", `{"poll_interval": "1s"}`, sdk.ErrBadConfig, "path"},
		{"path not a string", `{"path": 3}`, sdk.ErrBadConfig, "path"},
		{"poll_interval not a duration", `{"path": "` + folder + `", "poll_interval": "fast"}`, sdk.ErrBadConfig, "poll_interval"},
		{"poll_interval a number", `{"path": "` + folder + `", "poll_interval": 250}`, sdk.ErrBadConfig, "poll_interval"},
		{"poll_interval too short", `{"path": "` + folder + `", "poll_interval": "1ms"}`, sdk.ErrBadConfig, "poll_interval"},
		{"retention too short", `{"path": "` + folder + `", "retention": "10m"}`, sdk.ErrBadConfig, "retention"},
		{"retention negative", `{"path": "` + folder + `", "retention": "-5h"}`, sdk.ErrBadConfig, "retention"},
		{"max_payload negative", `{"path": "` + folder + `", "max_payload": -1}`, sdk.ErrBadConfig, "max_payload"},
		{"max_payload too large", `{"path": "` + folder + `", "max_payload": 1e12}`, sdk.ErrBadConfig, "max_payload"},
		{"trailing data", `{"path": "` + folder + `"} {}`, sdk.ErrBadConfig, "trailing"},
		{"folder missing", `{"path": "` + filepath.Join(folder, "nope") + `"}`, sdk.ErrNotFound, "does not exist"},
		{"path is a file", `{"path": "` + file + `"}`, sdk.ErrBadConfig, "not a folder"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch, err := dir.New().Configure(t.Context(), sdk.ConfigureRequest{Config: json.RawMessage(tt.config), StateDir: t.TempDir()})
			if err == nil {
				ch.Close()
				t.Fatal("Configure succeeded, want an error")
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("got %v (code %v), want code %v", err, sdk.CodeOf(err), tt.want.Code)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("error %q does not mention %q", err, tt.field)
			}
		})
	}
	// A bad config writes nothing into the folder.
	if ents, _ := os.ReadDir(folder); len(ents) != 1 {
		t.Errorf("failed Configure calls left %d entries in the folder, want only the test file", len(ents))
	}
}

// TestConfigureUnwritable makes the folder immutable (chattr +i stops even
// root), so creating board/ and log/ fails with a message saying what to do.
func TestConfigureUnwritable(t *testing.T) {
	folder := t.TempDir()
	if out, err := exec.Command("chattr", "+i", folder).CombinedOutput(); err != nil {
		if os.Geteuid() != 0 {
			if err := os.Chmod(folder, 0o555); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chmod(folder, 0o755) })
		} else {
			t.Skipf("cannot make a folder unwritable here (root, and chattr failed: %v %s)", err, out)
		}
	} else {
		t.Cleanup(func() { exec.Command("chattr", "-i", folder).Run() })
	}
	_, err := configure(t, map[string]any{"path": folder}, t.TempDir())
	if !errors.Is(err, sdk.ErrNeedsUserAction) || !strings.Contains(err.Error(), "not writable") {
		t.Fatalf("got %v, want a needs-user-action error saying the folder is not writable", err)
	}
}

// collect subscribes from cursor until want items arrived, then stops.
func collect(t *testing.T, ch sdk.Channel, cursor []byte, want int) []sdk.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var got []sdk.Delivery
	err := ch.Subscribe(ctx, sdk.SubscribeRequest{Cursor: cursor}, sdk.SinkFunc(func(ctx context.Context, d sdk.Delivery) error {
		if d.Skip {
			return nil // only moves the cursor past skipped files
		}
		got = append(got, d)
		if len(got) == want {
			cancel()
		}
		return nil
	}))
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("subscribe: %v", err)
	}
	if len(got) != want {
		t.Fatalf("got %d deliveries, want %d", len(got), want)
	}
	return got
}

func publish(t *testing.T, ch sdk.Channel, keys ...string) {
	t.Helper()
	var items []sdk.PublishItem
	for _, k := range keys {
		items = append(items, sdk.PublishItem{Data: []byte("data-" + k), IdempotencyKey: k})
	}
	channeltest.Publish(t, ch, items...)
}

func counters(t *testing.T, ch sdk.Channel) sdk.Health {
	t.Helper()
	return ch.(sdk.Healther).Health(t.Context())
}

// TestIgnoredFiles puts sync tools' temporary files, conflict copies and
// other foreign files next to real items: only the items are delivered or
// listed, and the rest is counted.
func TestIgnoredFiles(t *testing.T) {
	folder := t.TempDir()
	ch := mustConfigure(t, map[string]any{"path": folder, "poll_interval": "10ms"}, t.TempDir())
	publish(t, ch, "a", "b")
	if err := ch.(sdk.Board).Put(t.Context(), sdk.PutRequest{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	bucket := filepath.Join(folder, "log", time.Now().UTC().Format("2006010215"))
	for _, f := range []struct{ dir, name string }{
		{bucket, ".syncthing.a.tmp"},               // temp
		{bucket, "~syncthing~b.tmp"},               // temp
		{bucket, ".tmp-123"},                       // temp
		{bucket, ".remora-tmp-123"},                // temp (an earlier version's)
		{bucket, "a.sync-conflict-20260101-1234"},  // foreign
		{bucket, "notes.txt"},                      // foreign
		{filepath.Join(folder, "log"), "README"},   // foreign
		{filepath.Join(folder, "log"), "x.part"},   // temp
		{filepath.Join(folder, "board"), "k.part"}, // temp
		{filepath.Join(folder, "board"), "Thumbs.db"},
	} {
		if err := os.WriteFile(filepath.Join(f.dir, f.name), []byte("junk"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(folder, "log", "photos"), 0o755); err != nil { // foreign
		t.Fatal(err)
	}
	got := collect(t, ch, nil, 2)
	for _, d := range got {
		if !strings.HasPrefix(string(d.Data), "data-") {
			t.Errorf("delivered a foreign file: %s %q", d.ID, d.Data)
		}
	}
	resp, err := ch.(sdk.Board).Get(t.Context(), sdk.GetRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Entries) != 1 || resp.Entries[0].Key != "k" || string(resp.Entries[0].Value) != "v" {
		t.Errorf("board lists %+v, want only k=v", resp.Entries)
	}
	h := counters(t, ch)
	if h.Counters["ignored_temp"] != 6 || h.Counters["ignored_foreign"] != 5 {
		t.Errorf("counters %v: want ignored_temp 6, ignored_foreign 5", h.Counters)
	}
	if h.State != sdk.HealthOK {
		t.Errorf("health %v: %s", h.State, h.Message)
	}
}

// TestPrune removes buckets older than retention and never delivers them.
func TestPrune(t *testing.T) {
	folder := t.TempDir()
	old := filepath.Join(folder, "log", "2001010100")
	if err := os.MkdirAll(old, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(old, "ancient"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	ch := mustConfigure(t, map[string]any{"path": folder, "retention": "1h"}, t.TempDir())
	if _, err := os.Stat(old); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("expired bucket still there: %v", err)
	}
	publish(t, ch, "new")
	got := collect(t, ch, nil, 1)
	if string(got[0].Data) != "data-new" {
		t.Errorf("delivered %q", got[0].Data)
	}
	if n := counters(t, ch).Counters["pruned_buckets"]; n != 1 {
		t.Errorf("pruned_buckets = %d, want 1", n)
	}
}

// TestIdempotencyAcrossBuckets: a key published just before the hour
// turned is not written again just after it, even by a fresh channel that
// has not indexed it yet.
func TestIdempotencyAcrossBuckets(t *testing.T) {
	folder := t.TempDir()
	ch := mustConfigure(t, map[string]any{"path": folder}, t.TempDir())
	prev := time.Now().Add(-time.Hour).UTC().Format("2006010215")
	if err := os.MkdirAll(filepath.Join(folder, "log", prev), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(folder, "log", prev, "k1"), []byte("first"), 0o644); err != nil {
		t.Fatal(err)
	}
	resp, err := ch.Publish(t.Context(), sdk.PublishRequest{Items: []sdk.PublishItem{{Data: []byte("retry"), IdempotencyKey: "k1"}}})
	if err != nil || resp.Results[0].Err != nil {
		t.Fatalf("publish: %v %v", err, resp.Results)
	}
	if want := prev + "/k1"; resp.Results[0].ID != want {
		t.Errorf("ID %q, want the existing item %q", resp.Results[0].ID, want)
	}
	if _, err := os.Stat(filepath.Join(folder, "log", time.Now().UTC().Format("2006010215"), "k1")); err == nil {
		t.Error("the repeated key was written a second time")
	}
}

// TestBadItems: one bad item fails alone; the rest of the batch lands.
func TestBadItems(t *testing.T) {
	ch := mustConfigure(t, map[string]any{"path": t.TempDir(), "max_payload": 10}, t.TempDir())
	resp, err := ch.Publish(t.Context(), sdk.PublishRequest{Items: []sdk.PublishItem{
		{Data: []byte("ok"), IdempotencyKey: "good"},
		{Data: []byte("ok"), IdempotencyKey: "../escape"},
		{Data: []byte("ok"), IdempotencyKey: ""},
		{Data: []byte("01234567890"), IdempotencyKey: "big"},
		{Data: []byte("ok2"), IdempotencyKey: "good2"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for i, wantErr := range []bool{false, true, true, true, false} {
		if (resp.Results[i].Err != nil) != wantErr {
			t.Errorf("item %d: err %v, want error %v", i, resp.Results[i].Err, wantErr)
		}
	}
	if !errors.Is(resp.Results[3].Err, sdk.ErrTooLarge) {
		t.Errorf("oversize item: %v, want ErrTooLarge", resp.Results[3].Err)
	}
	if err := ch.(sdk.Board).Put(t.Context(), sdk.PutRequest{Key: "a/b", Value: nil}); err == nil {
		t.Error("Put with a key that is not a file name succeeded")
	}
	del, err := ch.(sdk.Deleter).Delete(t.Context(), sdk.DeleteRequest{IDs: []string{"../../etc/passwd", "2026010100/gone"}})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(del.Errors[0], sdk.ErrNotFound) || del.Errors[1] != nil {
		t.Errorf("Delete errors %v: want not-found for a foreign ID, nil for an item already gone", del.Errors)
	}
	collect(t, ch, nil, 2)
}

// TestIndexRecovery: a torn append is dropped and old cursors still work;
// an unreadable index starts over and old cursors become invalid, while a
// resubscription from the start loses nothing.
func TestIndexRecovery(t *testing.T) {
	folder, state := t.TempDir(), t.TempDir()
	cfg := map[string]any{"path": folder, "poll_interval": "10ms"}
	ch := mustConfigure(t, cfg, state)
	publish(t, ch, "a", "b", "c")
	got := collect(t, ch, nil, 3)
	ch.Close()

	ipath := filepath.Join(state, "dir-index")
	f, err := os.OpenFile(ipath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("99 2026") // a crash mid-append
	f.Close()
	ch = mustConfigure(t, cfg, state)
	publish(t, ch, "d")
	if d := collect(t, ch, got[1].Cursor, 2); string(d[0].Data) != "data-c" || string(d[1].Data) != "data-d" {
		t.Errorf("after a torn append, resumed with %q %q, want c then d", d[0].Data, d[1].Data)
	}
	ch.Close()

	if err := os.WriteFile(ipath, []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ch = mustConfigure(t, cfg, state)
	err = ch.Subscribe(t.Context(), sdk.SubscribeRequest{Cursor: got[2].Cursor}, sdk.SinkFunc(func(context.Context, sdk.Delivery) error { return nil }))
	if !errors.Is(err, sdk.ErrCursorInvalid) {
		t.Fatalf("cursor of a lost index: got %v, want ErrCursorInvalid", err)
	}
	collect(t, ch, nil, 4)
}

func TestCursorErrors(t *testing.T) {
	ch := mustConfigure(t, map[string]any{"path": t.TempDir()}, t.TempDir())
	publish(t, ch, "a")
	good := collect(t, ch, nil, 1)[0].Cursor
	ahead := append([]byte(nil), good...)
	ahead[len(ahead)-1] = 0x7f
	for name, c := range map[string][]byte{
		"garbage":  []byte("not a cursor"),
		"empty":    {},
		"ahead":    ahead,
		"trailing": append(append([]byte(nil), good...), 0),
	} {
		t.Run(name, func(t *testing.T) {
			err := ch.Subscribe(t.Context(), sdk.SubscribeRequest{Cursor: c}, sdk.SinkFunc(func(context.Context, sdk.Delivery) error { return nil }))
			if !errors.Is(err, sdk.ErrCursorInvalid) {
				t.Errorf("got %v, want ErrCursorInvalid", err)
			}
		})
	}
}

// TestShareGone: when the share disappears under a running channel (an
// unmounted USB stick), publishing fails with a clear, retryable error,
// dir never recreates the folder, health says so, and it recovers.
func TestShareGone(t *testing.T) {
	folder := t.TempDir()
	ch := mustConfigure(t, map[string]any{"path": folder, "poll_interval": "10ms"}, t.TempDir())
	publish(t, ch, "a")
	moved := folder + ".away"
	if err := os.Rename(folder, moved); err != nil {
		t.Fatal(err)
	}
	resp, err := ch.Publish(t.Context(), sdk.PublishRequest{Items: []sdk.PublishItem{{Data: []byte("x"), IdempotencyKey: "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(resp.Results[0].Err, sdk.ErrUnavailable) || !strings.Contains(resp.Results[0].Err.Error(), "mounted") {
		t.Errorf("publish to a vanished share: %v, want unavailable asking whether the share is mounted", resp.Results[0].Err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	err = ch.Subscribe(ctx, sdk.SubscribeRequest{}, sdk.SinkFunc(func(context.Context, sdk.Delivery) error { return nil }))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("subscribe on a vanished share: %v, want it to keep polling until its context ends", err)
	}
	if _, err := os.Stat(folder); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dir recreated the vanished folder: %v", err)
	}
	if h := counters(t, ch); h.State != sdk.HealthDown || !strings.Contains(h.Message, "mounted") {
		t.Errorf("health %v %q, want down asking whether the share is mounted", h.State, h.Message)
	}
	if err := os.Rename(moved, folder); err != nil {
		t.Fatal(err)
	}
	publish(t, ch, "b")
	collect(t, ch, nil, 2)
	if h := counters(t, ch); h.State != sdk.HealthOK {
		t.Errorf("health after the share came back: %v %q", h.State, h.Message)
	}
}

// TestSameKeyInBatch: a key repeated inside one batch makes one file, and
// both results name it; no temporary file is left behind.
func TestSameKeyInBatch(t *testing.T) {
	folder := t.TempDir()
	ch := mustConfigure(t, map[string]any{"path": folder}, t.TempDir())
	resp, err := ch.Publish(t.Context(), sdk.PublishRequest{Items: []sdk.PublishItem{
		{Data: []byte("one"), IdempotencyKey: "same"},
		{Data: []byte("one"), IdempotencyKey: "same"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Results[0].Err != nil || resp.Results[1].Err != nil || resp.Results[0].ID != resp.Results[1].ID {
		t.Fatalf("results %+v: want two successes with one ID", resp.Results)
	}
	bucket := filepath.Join(folder, "log", strings.Split(resp.Results[0].ID, "/")[0])
	ents, err := os.ReadDir(bucket)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != "same" {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("bucket holds %v, want only \"same\"", names)
	}
}

// TestOversizeFile: a file named like a key but larger than max_payload
// (something else dropped into the folder) is skipped and counted, and the
// items around it still arrive.
func TestOversizeFile(t *testing.T) {
	folder := t.TempDir()
	ch := mustConfigure(t, map[string]any{"path": folder, "poll_interval": "10ms", "max_payload": 16}, t.TempDir())
	publish(t, ch, "a")
	bucket := filepath.Join(folder, "log", time.Now().UTC().Format("2006010215"))
	if err := os.WriteFile(filepath.Join(bucket, "huge"), make([]byte, 17), 0o644); err != nil {
		t.Fatal(err)
	}
	publish(t, ch, "b")
	got := collect(t, ch, nil, 2)
	for _, d := range got {
		if d.ID == filepath.Base(bucket)+"/huge" {
			t.Errorf("delivered the oversize file")
		}
	}
	if n := counters(t, ch).Counters["ignored_oversize"]; n != 1 {
		t.Errorf("ignored_oversize = %d, want 1", n)
	}
}

// TestConcurrentSubscribers: several subscriptions on one channel, while
// two goroutines publish, each receive every item once, in the same order.
func TestConcurrentSubscribers(t *testing.T) {
	ch := mustConfigure(t, map[string]any{"path": t.TempDir(), "poll_interval": "10ms"}, t.TempDir())
	const subs, per = 3, 40
	results := make([][]string, subs)
	errs := make(chan error, subs+2)
	var wg sync.WaitGroup
	for i := range subs {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			err := ch.Subscribe(ctx, sdk.SubscribeRequest{}, sdk.SinkFunc(func(_ context.Context, d sdk.Delivery) error {
				results[i] = append(results[i], d.ID)
				if len(results[i]) == 2*per {
					cancel()
				}
				return nil
			}))
			if err != nil && !errors.Is(err, context.Canceled) {
				errs <- err
			}
		})
	}
	for w := range 2 {
		wg.Go(func() {
			for i := range per {
				k := fmt.Sprintf("w%d-%d", w, i)
				resp, err := ch.Publish(t.Context(), sdk.PublishRequest{Items: []sdk.PublishItem{{Data: []byte(k), IdempotencyKey: k}}})
				if err == nil {
					err = resp.Results[0].Err
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range subs {
		if len(results[i]) != 2*per {
			t.Fatalf("subscriber %d got %d items, want %d", i, len(results[i]), 2*per)
		}
		if !slices.Equal(results[i], results[0]) {
			t.Errorf("subscriber %d saw another order than subscriber 0", i)
		}
	}
}
