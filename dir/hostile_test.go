package dir_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/metrics"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/remora-p2p/remora/dir"
	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/testenv"
)

// The folder is hostile ground: any member, or a compromised sync peer, can
// put anything in it. These tests put there what a new user found makes a
// daemon grow past 1 GiB, stop reading, or fill its log (issue #20), and
// require that the channel reads nothing unbounded, keeps reading new
// items, closes promptly and warns once.

// heapWatch samples the heap while a test runs. It panics (crashing the
// test binary, which fails the test) past a hard cap, so a regression
// cannot take the shared machine's memory with it.
type heapWatch struct {
	base, peak uint64
	stop       chan struct{}
	done       chan struct{}
}

const heapCap = 768 << 20

func heapNow() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func watchHeap(t *testing.T) *heapWatch {
	t.Helper()
	w := &heapWatch{base: heapNow(), stop: make(chan struct{}), done: make(chan struct{})}
	w.peak = w.base
	go func() {
		defer close(w.done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
			if h := heapNow(); h > w.peak {
				w.peak = h
				if h > heapCap {
					panic(fmt.Sprintf("%s: heap reached %d MiB: the adapter reads without a bound", t.Name(), h>>20))
				}
			}
		}
	}()
	t.Cleanup(w.end)
	return w
}

func (w *heapWatch) end() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// growth is the peak heap above the start, in bytes.
func (w *heapWatch) growth() uint64 {
	w.end()
	if w.peak < w.base {
		return 0
	}
	return w.peak - w.base
}

func configureLogged(t *testing.T, cfg map[string]any, state string, lines *testenv.Buffer) sdk.Channel {
	t.Helper()
	raw := fmt.Sprintf(`{"path": %q, "poll_interval": %q, "max_payload": %v}`, cfg["path"], cfg["poll_interval"], cfg["max_payload"])
	ch, err := dir.New().Configure(t.Context(), sdk.ConfigureRequest{ChannelID: "hostile", Config: []byte(raw), StateDir: state,
		Logger: slog.New(slog.NewTextHandler(lines, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatalf("configure: %v", err)
	}
	return ch
}

// within fails the test if f has not returned after d. f keeps running
// (it cannot be stopped), so what it holds is the test's to release.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
	}
}

// subscription runs Subscribe in the background and collects deliveries.
type subscription struct {
	mu     sync.Mutex
	got    map[string]int // data → times
	skips  int
	cursor []byte
	err    error
	cancel context.CancelFunc
	done   chan struct{}
}

func subscribeBG(t *testing.T, ch sdk.Channel, cursor []byte) *subscription {
	ctx, cancel := context.WithCancel(t.Context())
	s := &subscription{got: map[string]int{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		err := ch.Subscribe(ctx, sdk.SubscribeRequest{Cursor: cursor}, sdk.SinkFunc(func(ctx context.Context, d sdk.Delivery) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			if d.Skip {
				s.skips++
			} else {
				s.got[string(d.Data)]++
			}
			s.cursor = d.Cursor
			return nil
		}))
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
	}()
	t.Cleanup(func() { s.stop(t) })
	return s
}

func (s *subscription) has(data string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got[data] > 0
}

func (s *subscription) stop(t *testing.T) {
	s.cancel()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Errorf("Subscribe did not return within 10s of its context ending")
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func bucketNow(folder string) string {
	return filepath.Join(folder, "log", time.Now().UTC().Format("2006010215"))
}

func mkfifo(t *testing.T, path string) {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
}

// hostileFiles are the special files the tests plant, by kind.
func plant(t *testing.T, kind, path string) {
	t.Helper()
	switch kind {
	case "symlink to /dev/zero":
		if err := os.Symlink("/dev/zero", path); err != nil {
			t.Fatal(err)
		}
	case "FIFO":
		mkfifo(t, path)
	case "socket":
		l, err := net.Listen("unix", path)
		if err != nil {
			t.Skipf("unix socket at %s: %v", path, err)
		}
		t.Cleanup(func() { l.Close() })
	case "device":
		// /dev/zero's own numbers: a device node the folder's writer made.
		if err := syscall.Mknod(path, syscall.S_IFCHR|0o644, 1<<8|5); err != nil {
			t.Skipf("mknod needs root: %v", err)
		}
	default:
		t.Fatalf("unknown kind %q", kind)
	}
}

var specialKinds = []string{"symlink to /dev/zero", "FIFO", "socket", "device"}

// TestSpecialFilesInLog: a special file named like a key in a log bucket
// is skipped and counted; the reader goes on reading new items within its
// poll interval, with bounded memory, and Close returns promptly.
func TestSpecialFilesInLog(t *testing.T) {
	for _, kind := range specialKinds {
		t.Run(kind, func(t *testing.T) {
			folder := t.TempDir()
			lines := &testenv.Buffer{}
			ch := configureLogged(t, map[string]any{"path": folder, "poll_interval": "20ms", "max_payload": 1 << 20}, t.TempDir(), lines)
			publish(t, ch, "before")
			plant(t, kind, filepath.Join(bucketNow(folder), "special"))
			w := watchHeap(t)
			s := subscribeBG(t, ch, nil)
			waitFor(t, 10*time.Second, "the item published before the special file", func() bool { return s.has("data-before") })
			for i := range 5 {
				k := fmt.Sprintf("after%d", i)
				publish(t, ch, k)
				waitFor(t, 10*time.Second, "a new item after the special file", func() bool { return s.has("data-" + k) })
			}
			if g := w.growth(); g > 32<<20 {
				t.Errorf("heap grew by %d MiB, want under 32 MiB", g>>20)
			}
			h := counters(t, ch)
			if h.Counters["ignored_special"] != 1 {
				t.Errorf("counters %v: want ignored_special 1", h.Counters)
			}
			within(t, 5*time.Second, "Close", func() { ch.Close() })
			s.stop(t)
			if n := strings.Count(lines.String(), "skipping a file that is not a regular file"); n != 1 {
				t.Errorf("the special file was reported %d times in the log, want once:\n%s", n, lines.String())
			}
		})
	}
}

// TestSpecialFilesOnBoard: the same on the board: Get lists the real keys
// and leaves the special file out, promptly and with bounded memory.
func TestSpecialFilesOnBoard(t *testing.T) {
	for _, kind := range specialKinds {
		t.Run(kind, func(t *testing.T) {
			folder := t.TempDir()
			lines := &testenv.Buffer{}
			ch := configureLogged(t, map[string]any{"path": folder, "poll_interval": "20ms", "max_payload": 1 << 20}, t.TempDir(), lines)
			if err := ch.(sdk.Board).Put(t.Context(), sdk.PutRequest{Key: "real", Value: []byte("v")}); err != nil {
				t.Fatal(err)
			}
			plant(t, kind, filepath.Join(folder, "board", "special"))
			w := watchHeap(t)
			for _, keys := range [][]string{nil, {"special", "real"}} {
				var resp sdk.GetResponse
				var err error
				within(t, 5*time.Second, "Get", func() { resp, err = ch.(sdk.Board).Get(t.Context(), sdk.GetRequest{Keys: keys}) })
				if err != nil {
					t.Fatalf("Get %v: %v", keys, err)
				}
				if len(resp.Entries) != 1 || resp.Entries[0].Key != "real" {
					t.Errorf("Get %v = %d entries, want only \"real\"", keys, len(resp.Entries))
				}
			}
			if g := w.growth(); g > 32<<20 {
				t.Errorf("heap grew by %d MiB, want under 32 MiB", g>>20)
			}
			if n := counters(t, ch).Counters["ignored_special"]; n != 1 {
				t.Errorf("ignored_special = %d, want 1", n)
			}
			within(t, 5*time.Second, "Close", func() { ch.Close() })
		})
	}
}

// TestLinksOutOfTheFolder: links to files outside the folder, named like
// items, are never read; a log/ or board/ replaced by a link to another
// folder is never listed, pruned or written into.
func TestLinksOutOfTheFolder(t *testing.T) {
	t.Run("item", func(t *testing.T) {
		folder, outside := t.TempDir(), t.TempDir()
		secret := filepath.Join(outside, "secret")
		if err := os.WriteFile(secret, []byte("outside"), 0o600); err != nil {
			t.Fatal(err)
		}
		ch := mustConfigure(t, map[string]any{"path": folder, "poll_interval": "10ms"}, t.TempDir())
		publish(t, ch, "a")
		if err := os.Symlink(secret, filepath.Join(bucketNow(folder), "link")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(secret, filepath.Join(folder, "board", "link")); err != nil {
			t.Fatal(err)
		}
		publish(t, ch, "b")
		for _, d := range collect(t, ch, nil, 2) {
			if string(d.Data) == "outside" {
				t.Errorf("delivered a file outside the folder through a link")
			}
		}
		resp, err := ch.(sdk.Board).Get(t.Context(), sdk.GetRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range resp.Entries {
			if string(e.Value) == "outside" {
				t.Errorf("board listed a file outside the folder through a link")
			}
		}
	})
	t.Run("folders", func(t *testing.T) {
		folder, outside := t.TempDir(), t.TempDir()
		ch := mustConfigure(t, map[string]any{"path": folder, "poll_interval": "10ms"}, t.TempDir())
		// Outside: a folder that looks like an expired bucket and a
		// board, with files named like keys.
		expired := filepath.Join(outside, "2001010100")
		if err := os.MkdirAll(expired, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{filepath.Join(expired, "keep"), filepath.Join(outside, "key")} {
			if err := os.WriteFile(p, []byte("outside"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		for _, sub := range []string{"log", "board"} {
			if err := os.RemoveAll(filepath.Join(folder, sub)); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, filepath.Join(folder, sub)); err != nil {
				t.Fatal(err)
			}
		}
		// A scan (Subscribe), a board read, and a publish.
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		defer cancel()
		ch.Subscribe(ctx, sdk.SubscribeRequest{}, sdk.SinkFunc(func(ctx context.Context, d sdk.Delivery) error {
			if string(d.Data) == "outside" {
				t.Errorf("delivered %s from outside the folder", d.ID)
			}
			return nil
		}))
		if resp, err := ch.(sdk.Board).Get(t.Context(), sdk.GetRequest{}); err == nil {
			for _, e := range resp.Entries {
				t.Errorf("board listed %s from outside the folder", e.Key)
			}
		}
		resp, err := ch.Publish(t.Context(), sdk.PublishRequest{Items: []sdk.PublishItem{{Data: []byte("x"), IdempotencyKey: "k"}}})
		if err == nil && resp.Results[0].Err == nil {
			t.Errorf("published into a log/ that links out of the folder")
		}
		if err := ch.(sdk.Board).Put(t.Context(), sdk.PutRequest{Key: "k", Value: []byte("x")}); err == nil {
			t.Errorf("put into a board/ that links out of the folder")
		}
		if _, err := os.Stat(filepath.Join(expired, "keep")); err != nil {
			t.Errorf("pruning followed log/ out of the folder and removed %s: %v", expired, err)
		}
		ents, _ := os.ReadDir(outside)
		for _, e := range ents {
			if e.Name() != "2001010100" && e.Name() != "key" {
				t.Errorf("wrote %s outside the folder", e.Name())
			}
		}
		if h := counters(t, ch); h.State == sdk.HealthOK {
			t.Errorf("health is ok with log/ and board/ linking out of the folder")
		} else {
			t.Logf("health: %s: %s", h.State, h.Message)
		}
	})
	for _, name := range []string{".folder-id", ".remora-folder"} { // the identity file, and an earlier version's
		t.Run("identity "+name, func(t *testing.T) {
			folder := t.TempDir()
			if err := os.Symlink("/dev/zero", filepath.Join(folder, name)); err != nil {
				t.Fatal(err)
			}
			w := watchHeap(t)
			var err error
			within(t, 5*time.Second, "Configure", func() { _, err = configure(t, map[string]any{"path": folder}, t.TempDir()) })
			if g := w.growth(); g > 32<<20 {
				t.Errorf("heap grew by %d MiB reading the folder identity, want under 32 MiB", g>>20)
			}
			if err != nil {
				t.Logf("Configure: %v", err)
			}
		})
	}
}

// TestGrowingBoardFile: a board file that keeps growing while it is read
// is read no further than max_payload.
func TestGrowingBoardFile(t *testing.T) {
	folder := t.TempDir()
	ch := mustConfigure(t, map[string]any{"path": folder, "poll_interval": "10ms", "max_payload": 4096}, t.TempDir())
	path := filepath.Join(folder, "board", "grows")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	chunk := make([]byte, 1<<20)
	for range 8 { // already far over max_payload, and growing
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	wg.Go(func() {
		for written := 0; written < 56<<20; written += len(chunk) {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := f.Write(chunk); err != nil {
				return
			}
		}
	})
	w := watchHeap(t)
	for range 20 {
		resp, err := ch.(sdk.Board).Get(t.Context(), sdk.GetRequest{Keys: []string{"grows"}})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range resp.Entries {
			if len(e.Value) > 4096 {
				t.Fatalf("Get returned %d bytes of a growing file, max_payload is 4096", len(e.Value))
			}
		}
	}
	if g := w.growth(); g > 32<<20 {
		t.Errorf("heap grew by %d MiB, want under 32 MiB", g>>20)
	}
}

// TestJunkWarnedOnce: oversize junk files are reported once each, and not
// again after a restart (the cursor moves past what was skipped).
func TestJunkWarnedOnce(t *testing.T) {
	folder, state := t.TempDir(), t.TempDir()
	lines := &testenv.Buffer{}
	cfg := map[string]any{"path": folder, "poll_interval": "10ms", "max_payload": 1024}
	ch := configureLogged(t, cfg, state, lines)
	publish(t, ch, "first")
	for i := range 30 {
		if err := os.WriteFile(filepath.Join(bucketNow(folder), fmt.Sprintf("junk%d", i)), make([]byte, 2048), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := subscribeBG(t, ch, nil)
	publish(t, ch, "last")
	waitFor(t, 10*time.Second, "the item after the junk", func() bool { return s.has("data-last") })
	// Many polls later, still one line per file at most.
	time.Sleep(300 * time.Millisecond)
	if n := strings.Count(lines.String(), "larger than max_payload"); n == 0 || n > 30 {
		t.Errorf("30 oversize files were reported in %d lines, want 1 to 30", n)
	}
	s.stop(t)
	s.mu.Lock()
	cursor := s.cursor
	s.mu.Unlock()
	within(t, 5*time.Second, "Close", func() { ch.Close() })

	restarted := &testenv.Buffer{}
	ch2 := configureLogged(t, cfg, state, restarted)
	defer ch2.Close()
	s2 := subscribeBG(t, ch2, cursor)
	publish(t, ch2, "after-restart")
	waitFor(t, 10*time.Second, "the item after the restart", func() bool { return s2.has("data-after-restart") })
	if n := strings.Count(restarted.String(), "larger than max_payload"); n != 0 {
		t.Errorf("after a restart the junk was reported again (%d lines): the cursor did not move past it", n)
	}
	s2.stop(t)
	if err := s2.err; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("subscribe: %v", err)
	}
}
