package dir_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/remora-p2p/remora/sdk"
)

// syncToolWrite drops a file into the folder as a sync tool does: a
// temporary file first, then a rename to its name.
func syncToolWrite(t *testing.T, folder, bucket, key string) {
	t.Helper()
	dir := filepath.Join(folder, "log", bucket)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, ".syncthing."+key+".tmp")
	if err := os.WriteFile(tmp, []byte("data-"+key), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, key)); err != nil {
		t.Fatal(err)
	}
}

// subscribeAll collects deliveries in the background until the test ends.
func subscribeAll(t *testing.T, ch sdk.Channel) <-chan string {
	t.Helper()
	got := make(chan string, 100)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- ch.Subscribe(ctx, sdk.SubscribeRequest{}, sdk.SinkFunc(func(_ context.Context, d sdk.Delivery) error {
			got <- string(d.Data)
			return nil
		}))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("subscribe: %v", err)
		}
	})
	return got
}

func waitDelivered(t *testing.T, got <-chan string, want ...string) {
	t.Helper()
	missing := map[string]bool{}
	for _, w := range want {
		missing[w] = true
	}
	deadline := time.After(30 * time.Second)
	for len(missing) > 0 {
		select {
		case d := <-got:
			delete(missing, d)
		case <-deadline:
			t.Fatalf("not delivered within 30 s: %v", missing)
		}
	}
}

// TestWatchDelivers: with polling an hour apart, files that a sync tool
// drops into the folder — into the current bucket, into a bucket folder
// that appears later, and with the bucket's directory time put back — are
// delivered: only the folder watch can have noticed them.
func TestWatchDelivers(t *testing.T) {
	folder := t.TempDir()
	ch := mustConfigure(t, map[string]any{"path": folder, "watch": "on", "poll_interval": "1h", "rescan_interval": "1h"}, t.TempDir())
	if h := counters(t, ch); h.Counters["watching"] != 1 {
		t.Fatalf("watching = %d, want 1 (health %+v)", h.Counters["watching"], h)
	}
	got := subscribeAll(t, ch)

	now := time.Now().UTC()
	syncToolWrite(t, folder, now.Format("2006010215"), "current")
	waitDelivered(t, got, "data-current")

	// A friend's laptop brings a bucket from three days ago.
	old := now.Add(-72 * time.Hour).Format("2006010215")
	syncToolWrite(t, folder, old, "late")
	waitDelivered(t, got, "data-late")

	// A filesystem that does not update directory times: the event names
	// the bucket, so it is read again all the same.
	bucket := filepath.Join(folder, "log", now.Format("2006010215"))
	fi, err := os.Stat(bucket)
	if err != nil {
		t.Fatal(err)
	}
	syncToolWrite(t, folder, now.Format("2006010215"), "stale")
	if err := os.Chtimes(bucket, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	waitDelivered(t, got, "data-stale")

	h := counters(t, ch)
	if h.Counters["watch_wakeups"] == 0 {
		t.Errorf("watch_wakeups = 0 after three deliveries the watch found")
	}
}

// TestWatchOff polls as before: Health says the folder is not watched, and
// files still arrive at poll_interval.
func TestWatchOff(t *testing.T) {
	folder := t.TempDir()
	ch := mustConfigure(t, map[string]any{"path": folder, "watch": "off", "poll_interval": "10ms"}, t.TempDir())
	if h := counters(t, ch); h.Counters["watching"] != 0 {
		t.Fatalf("watching = %d with watch off", h.Counters["watching"])
	}
	got := subscribeAll(t, ch)
	syncToolWrite(t, folder, time.Now().UTC().Format("2006010215"), "polled")
	waitDelivered(t, got, "data-polled")
}

// TestWatchBurst: a burst of files is delivered whole, each once.
func TestWatchBurst(t *testing.T) {
	folder := t.TempDir()
	ch := mustConfigure(t, map[string]any{"path": folder, "poll_interval": "1h", "rescan_interval": "1h"}, t.TempDir())
	got := subscribeAll(t, ch)
	var want []string
	bucket := time.Now().UTC().Format("2006010215")
	for i := range 200 {
		k := "k" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		syncToolWrite(t, folder, bucket, k)
		want = append(want, "data-"+k)
	}
	waitDelivered(t, got, want...)
	select {
	case d := <-got:
		t.Fatalf("delivered again: %q", d)
	default:
	}
}

// TestWatchWhileDelivering: a file that arrives while Subscribe is busy
// delivering (the host slow to take a batch, as behind a flood of junk) is
// delivered at once, not at the safety rescan an hour later. Before the fix
// the change noticed during the delivery was forgotten.
func TestWatchWhileDelivering(t *testing.T) {
	folder := t.TempDir()
	ch := mustConfigure(t, map[string]any{"path": folder, "watch": "on", "poll_interval": "1h", "rescan_interval": "1h"}, t.TempDir())
	bucket := time.Now().UTC().Format("2006010215")
	got := make(chan string, 10)
	release := make(chan struct{})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- ch.Subscribe(ctx, sdk.SubscribeRequest{}, sdk.SinkFunc(func(ctx context.Context, d sdk.Delivery) error {
			got <- string(d.Data)
			if string(d.Data) == "data-first" {
				select { // the host is busy with this one
				case <-release:
				case <-ctx.Done():
				}
			}
			return nil
		}))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("subscribe: %v", err)
		}
	})
	syncToolWrite(t, folder, bucket, "first")
	waitDelivered(t, got, "data-first")
	before := counters(t, ch).Counters["watch_wakeups"]
	syncToolWrite(t, folder, bucket, "second")
	deadline := time.Now().Add(30 * time.Second)
	for counters(t, ch).Counters["watch_wakeups"] == before {
		if time.Now().After(deadline) {
			t.Fatal("the watch did not notice the second file within 30 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	waitDelivered(t, got, "data-second")
}
