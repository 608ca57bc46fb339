package plugins_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/remora-p2p/remora/plugins"
	"github.com/remora-p2p/remora/sdk"
)

// hog is an adapter that a channel can make grow without bound, as a
// reader without limits does on /dev/zero: publishing "grow" allocates
// private memory (what RLIMIT_DATA counts), "shm" shared memory (which
// escapes RLIMIT_DATA but not the supervisor's watch on resident memory).
// Its channels' health tells the test the GOMEMLIMIT it was given.
type hog struct{ sdk.Adapter }

func (h hog) Configure(ctx context.Context, req sdk.ConfigureRequest) (sdk.Channel, error) {
	ch, err := h.Adapter.Configure(ctx, req)
	if err != nil {
		return nil, err
	}
	return hogChannel{ch}, nil
}

type hogChannel struct{ sdk.Channel }

var hoard [][]byte

func (c hogChannel) Publish(ctx context.Context, req sdk.PublishRequest) (sdk.PublishResponse, error) {
	for _, it := range req.Items {
		switch string(it.Data) {
		case "grow":
			for {
				b := make([]byte, 8<<20)
				for i := 0; i < len(b); i += 4096 {
					b[i] = 1
				}
				hoard = append(hoard, b)
			}
		case "shm":
			for {
				b, err := unix.Mmap(-1, 0, 8<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANON)
				if err != nil {
					return sdk.PublishResponse{}, err
				}
				for i := 0; i < len(b); i += 4096 {
					b[i] = 1
				}
				hoard = append(hoard, b)
				time.Sleep(5 * time.Millisecond) // give the watch a chance
			}
		}
	}
	return c.Channel.Publish(ctx, req)
}

func (c hogChannel) Health(context.Context) sdk.Health {
	return sdk.Health{State: sdk.HealthOK, Message: "GOMEMLIMIT=" + os.Getenv("GOMEMLIMIT")}
}

// dataLimit reads pid's RLIMIT_DATA from /proc.
func dataLimit(t *testing.T, pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/limits")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "Max data size") {
			return strings.Fields(strings.TrimPrefix(l, "Max data size"))[0]
		}
	}
	t.Fatalf("no data size limit in %s", b)
	return ""
}

// misbehaviour waits until the adapter was killed or died for
// misbehaving, restarted, and channel a works again; it returns the
// adapter's health and channel a's.
func misbehaviour(t *testing.T, s *plugins.Supervisor, a *plugins.Channel, oldPid int) (plugins.AdapterHealth, sdk.Health) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for {
		h := s.Health(ctx)[0]
		if h.Misbehaved != nil && h.Running && h.Pid != oldPid {
			if _, err := publish(ctx, a, "after"); err == nil {
				return h, a.Health(ctx)
			} else if !errors.Is(err, sdk.ErrUnavailable) {
				t.Fatalf("publish after the restart: %v", err)
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("adapter not killed and restarted: %+v", h)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestMemoryCeiling: an adapter process that a channel makes grow without
// bound is stopped by its memory limit, hard (RLIMIT_DATA, Go's
// GOMEMLIMIT) or by the supervisor's watch on its resident memory; it is
// restarted, its channels work again, and their health (what doctor
// shows) says which adapter misbehaved, how, and on which channels.
func TestMemoryCeiling(t *testing.T) {
	const limit = 256 << 20
	for _, tc := range []struct {
		name, item, why string
		watch           time.Duration
	}{
		// The watch is slowed down so that only the rlimit can stop it.
		{"rlimit", "grow", "ran out of memory under its limit of 256 MiB", time.Hour},
		{"watch", "shm", "over its memory limit of 256 MiB; killed", 50 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSupervisor(t, plugins.Options{Builtins: []string{"hog"}, MemoryLimit: limit, WatchEvery: tc.watch})
			ctx := context.Background()
			a, err := s.Open(ctx, "hog", sdk.ConfigureRequest{ChannelID: "a", StateDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Open(ctx, "hog", sdk.ConfigureRequest{ChannelID: "b", StateDir: t.TempDir()}); err != nil {
				t.Fatal(err)
			}
			pid := s.Health(ctx)[0].Pid
			got, err := strconv.ParseInt(dataLimit(t, pid), 10, 64)
			if err != nil || got < limit || got > 1<<50 {
				t.Errorf("the adapter's RLIMIT_DATA is %d (%v), want what it held at start + %d", got, err, limit)
			}
			if h := a.Health(ctx); h.Message != fmt.Sprintf("GOMEMLIMIT=%d", limit/2) {
				t.Errorf("the adapter got %q, want GOMEMLIMIT=%d", h.Message, limit/2)
			}
			start := time.Now()
			if _, err := publish(ctx, a, tc.item); !errors.Is(err, sdk.ErrUnavailable) {
				t.Fatalf("publish that makes the adapter grow: %v, want ErrUnavailable", err)
			}
			h, ch := misbehaviour(t, s, a, pid)
			t.Logf("stopped and back in %v: %v", time.Since(start).Round(time.Millisecond), h.Misbehaved)
			if !strings.Contains(h.Misbehaved.Error(), tc.why) {
				t.Errorf("why the adapter was stopped: %v, want %q", h.Misbehaved, tc.why)
			}
			if h.Restarts != 1 {
				t.Errorf("restarts %d, want 1", h.Restarts)
			}
			if ch.State != sdk.HealthDegraded || !strings.Contains(ch.Message, tc.why) ||
				!strings.Contains(ch.Message, "reading this channel or b") || ch.Counters["adapter_restarts"] != 1 {
				t.Errorf("channel a's health %+v: want degraded, why, the other channel named, one restart", ch)
			}
		})
	}
}

// TestHangKilled: an adapter process that stops answering (here: stopped
// with SIGSTOP) is killed after HangAfter and restarted; its channel works
// again and says the adapter hung.
func TestHangKilled(t *testing.T) {
	s := newSupervisor(t, plugins.Options{Builtins: []string{"mem"}, WatchEvery: 50 * time.Millisecond, HangAfter: 500 * time.Millisecond})
	ctx := context.Background()
	a, err := s.Open(ctx, "mem", sdk.ConfigureRequest{ChannelID: "a", StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	pid := s.Health(ctx)[0].Pid
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	h, ch := misbehaviour(t, s, a, pid)
	t.Logf("hung adapter replaced in %v: %v", time.Since(start).Round(time.Millisecond), h.Misbehaved)
	if !strings.Contains(h.Misbehaved.Error(), "hung; killed") {
		t.Errorf("why the adapter was stopped: %v, want hung", h.Misbehaved)
	}
	if ch.State != sdk.HealthDegraded || !strings.Contains(ch.Message, "hung") || !strings.Contains(ch.Message, "reading this channel") {
		t.Errorf("channel health %+v: want degraded with the reason", ch)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("the hung process %d still exists", pid)
	}
}
