package dir

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/testenv"
)

// TestStaleDirectoryTime: on a filesystem that does not update a
// directory's time when a file arrives (some NFS setups, FAT's 2 s
// granularity), the file is still found by the periodic full rescan.
func TestStaleDirectoryTime(t *testing.T) {
	oldFull, oldFresh := fullRescan, freshDir
	fullRescan, freshDir = 300*time.Millisecond, 0
	t.Cleanup(func() { fullRescan, freshDir = oldFull, oldFresh })

	folder := t.TempDir()
	ch := polledChannel(t, folder)
	if _, err := ch.Publish(t.Context(), sdk.PublishRequest{Items: []sdk.PublishItem{{Data: []byte("a"), IdempotencyKey: "a"}}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	got := make(chan string, 10)
	done := make(chan error, 1)
	go func() {
		done <- ch.Subscribe(ctx, sdk.SubscribeRequest{}, sdk.SinkFunc(func(_ context.Context, d sdk.Delivery) error {
			got <- string(d.Data)
			return nil
		}))
	}()
	if d := <-got; d != "a" {
		t.Fatalf("first delivery %q", d)
	}
	// Let the bucket be scanned with its current time, then add a file
	// and put the directory time back.
	time.Sleep(50 * time.Millisecond)
	bucket := filepath.Join(folder, "log", bucketOf(time.Now()))
	fi, err := os.Stat(bucket)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bucket, "late"), []byte("late"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(bucket, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-got:
		if d != "late" {
			t.Fatalf("got %q, want the late file", d)
		}
	case <-ctx.Done():
		t.Fatal("the file behind a stale directory time was never delivered")
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}

// FuzzParseConfig: no input panics the config parser, and every rejection
// is a bad-config error a user can read.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"path": "/tmp/x", "poll_interval": "250ms", "retention": "168h", "max_payload": 1048576}`))
	f.Add([]byte(`{"path": 1}`))
	f.Add([]byte(`{"poll_interval": "1ms"}`))
	f.Add([]byte(`{"path": "/x"} trailing`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := parseConfig(raw)
		if err != nil {
			if !errors.Is(err, sdk.ErrBadConfig) || !strings.HasPrefix(err.Error(), "bad config: dir: config") {
				t.Fatalf("rejection %v is not a dir bad-config error", err)
			}
			return
		}
		if c.Path == "" || c.PollInterval.D() < minPoll || c.Retention.D() < minRetention || c.MaxPayload < 1 || c.MaxPayload > maxMaxPayload {
			t.Fatalf("accepted an invalid config %+v from %q", c, raw)
		}
	})
}

// FuzzLoadIndex: a damaged index file never panics the loader, and an
// index it accepts survives a rewrite unchanged.
func FuzzLoadIndex(f *testing.F) {
	id := "00112233445566778899aabbccddeeff"
	f.Add([]byte(indexHeader + " " + id + " " + id + " 1\n"))
	f.Add([]byte(indexHeader + " " + id + " " + id + " 5\n5 2026112513 abc\n6 2026112514 d-e_f\n"))
	f.Add([]byte(indexHeader + " " + id + " " + id + " 5\n5 2026112513 abc\n6 20261"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), "idx")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		x, err := loadIndex(path)
		if err != nil {
			return
		}
		if err := x.rewrite(); err != nil {
			t.Fatal(err)
		}
		x.close()
		y, err := loadIndex(path)
		if err != nil {
			t.Fatalf("rewritten index does not load: %v", err)
		}
		y.close()
		if x.id != y.id || x.folder != y.folder || x.next != y.next || len(x.entries) != len(y.entries) {
			t.Fatalf("rewrite changed the index: %+v vs %+v", x, y)
		}
		for i := range x.entries {
			if x.entries[i] != y.entries[i] {
				t.Fatalf("entry %d: %+v vs %+v", i, x.entries[i], y.entries[i])
			}
		}
	})
}

// TestFolderIDDamaged: the folder's identity file lives in the shared
// folder, where anyone with access can write it; a damaged one is replaced,
// never a crash (an over-long hex ID used to panic hex.Decode).
func TestFolderIDDamaged(t *testing.T) {
	valid := "00112233445566778899aabbccddeeff"
	for _, tc := range []struct {
		name, content string
		keep          bool
		file          string // default folderIDFile
	}{
		{"valid", valid + "\n", true, ""},
		{"an earlier version's file is adopted", valid + "\n", true, legacyFolderIDFile},
		{"an earlier version's damaged file", "0011\n", false, legacyFolderIDFile},
		{"over-long hex", valid + "00112233\n", false, ""},
		{"short hex", "0011\n", false, ""},
		{"not hex", strings.Repeat("z", 32) + "\n", false, ""},
		{"empty", "", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			file := cmp.Or(tc.file, folderIDFile)
			if err := os.WriteFile(filepath.Join(root, file), []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			r, err := os.OpenRoot(root)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			id, err := folderID(r)
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(id[:]); (got == valid) != tc.keep {
				t.Fatalf("folder ID %s from %q; want kept=%v", got, tc.content, tc.keep)
			}
			again, err := folderID(r)
			if err != nil || again != id {
				t.Fatalf("the replaced identity did not persist: %x vs %x (%v)", again, id, err)
			}
		})
	}
}

// TestBoardIgnoredCounted: temporary and foreign files on the board are
// counted in Health while the daemon reads the board only by key (it
// never lists the whole board since it reads presence slots by key), and
// the counts follow the folder when they go.
func TestBoardIgnoredCounted(t *testing.T) {
	oldFull := fullRescan
	fullRescan = 100 * time.Millisecond
	t.Cleanup(func() { fullRescan = oldFull })

	folder := t.TempDir()
	// Polled, so that scans (and a full one every 100 ms) run without
	// waiting for a change in log/ or the minute's rescan.
	ch := polledChannel(t, folder)
	b := ch.(sdk.Board)
	if err := b.Put(t.Context(), sdk.PutRequest{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	board := filepath.Join(folder, "board")
	for _, name := range []string{"k.part", ".syncthing.k.tmp", "Thumbs.db"} { // temp, temp, foreign
		if err := os.WriteFile(filepath.Join(board, name), []byte("junk"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(board, "photos"), 0o755); err != nil { // foreign
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- ch.Subscribe(ctx, sdk.SubscribeRequest{}, sdk.SinkFunc(func(context.Context, sdk.Delivery) error { return nil }))
	}()
	defer func() {
		cancel()
		<-done
	}()
	// The daemon's read: by key only.
	resp, err := b.Get(t.Context(), sdk.GetRequest{Keys: []string{"k"}})
	if err != nil || len(resp.Entries) != 1 {
		t.Fatalf("get k: %v %+v", err, resp.Entries)
	}
	count := func() (int64, int64) {
		h := ch.(sdk.Healther).Health(t.Context())
		return h.Counters["ignored_temp"], h.Counters["ignored_foreign"]
	}
	testenv.WaitFor(t, "the board's temporary and foreign files counted", 10*time.Second, func() bool {
		temp, foreign := count()
		return temp == 2 && foreign == 2
	})
	for _, name := range []string{"k.part", ".syncthing.k.tmp", "Thumbs.db", "photos"} {
		if err := os.Remove(filepath.Join(board, name)); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitFor(t, "the counts back to zero once the files went", 10*time.Second, func() bool {
		temp, foreign := count()
		return temp == 0 && foreign == 0
	})
}

// polledChannel opens a dir channel on folder that polls every 10 ms
// instead of watching; it is closed when the test ends.
func polledChannel(t *testing.T, folder string) sdk.Channel {
	t.Helper()
	raw, _ := json.Marshal(map[string]string{"path": folder, "watch": "off", "poll_interval": "10ms"})
	ch, err := New().Configure(t.Context(), sdk.ConfigureRequest{Config: raw, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ch.Close() })
	return ch
}
