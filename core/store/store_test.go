package store

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) Now() time.Time { return c.t }

func open(t testing.TB, c *clock) *DB {
	t.Helper()
	d, err := Open(filepath.Join(t.TempDir(), "remora.db"), Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// reopen closes d and opens its file again, as a restart does; the
// reopened store is closed when the test ends.
func reopen(t testing.TB, d *DB, path string) *DB {
	t.Helper()
	d.Close()
	d, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func msg(i int, until time.Time) *InboxMessage {
	return &InboxMessage{Sender: "peer", ID: [16]byte{byte(i), byte(i >> 8), byte(i >> 16)}, Kind: 1,
		Body: []byte(fmt.Sprintf("message %d", i)), DedupeKey: []byte(fmt.Sprintf("peer/%d", i)), DedupeUntil: until}
}

func TestInboxDedupe(t *testing.T) {
	c := &clock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	d := open(t, c)
	until := c.t.Add(time.Hour)
	tests := []struct {
		name    string
		m       *InboxMessage
		wantDup bool
	}{
		{"first copy", msg(1, until), false},
		{"second copy", msg(1, until), true},
		{"other message", msg(2, until), false},
		{"copy of other", msg(2, until), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.m.Channel, tt.m.Cursor = "dir:a", []byte(tt.name)
			dup, err := d.InboxPut(tt.m)
			if err != nil {
				t.Fatal(err)
			}
			if dup != tt.wantDup {
				t.Fatalf("dup = %v, want %v", dup, tt.wantDup)
			}
			cur, _ := d.Cursor("dir:a")
			if string(cur) != tt.name {
				t.Fatalf("cursor = %q, want %q (moved even for a duplicate)", cur, tt.name)
			}
		})
	}
	got, err := d.InboxAfter(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || string(got[0].Body) != "message 1" || string(got[1].Body) != "message 2" || got[0].Seq >= got[1].Seq {
		t.Fatalf("inbox = %+v", got)
	}
	if _, err := d.InboxPut(&InboxMessage{}); err == nil {
		t.Fatal("message without dedupe key accepted")
	}

	// The app acks the first: it is gone, the cursor holds, a late copy is
	// still a duplicate.
	if err := d.AckApp(got[0].Seq); err != nil {
		t.Fatal(err)
	}
	if err := d.AckApp(0); err != nil { // never backwards
		t.Fatal(err)
	}
	if cur, _ := d.AppCursor(); cur != got[0].Seq {
		t.Fatalf("app cursor %d, want %d", cur, got[0].Seq)
	}
	rest, _ := d.InboxAfter(0, 0)
	if len(rest) != 1 || rest[0].Seq != got[1].Seq {
		t.Fatalf("after ack: %+v", rest)
	}
	if dup, _ := d.InboxPut(msg(1, until)); !dup {
		t.Fatal("late copy of an acked message not recognized")
	}

	// After the dedupe window a copy is new again (the envelope's time
	// check rejects such copies before they get here).
	c.t = until.Add(time.Second)
	if n, err := d.PruneDedupe(); err != nil || n != 2 {
		t.Fatalf("pruned %d, err %v; want 2", n, err)
	}
	if dup, _ := d.InboxPut(msg(1, c.t.Add(time.Hour))); dup {
		t.Fatal("expired dedupe entry still matched")
	}
}

func TestOutbox(t *testing.T) {
	c := &clock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	d := open(t, c)
	items := []*OutboxItem{
		{ID: [16]byte{1}, Body: []byte("a"), Expires: c.t.Add(time.Minute), To: []string{"p1", "p2"}},
		{ID: [16]byte{2}, Body: []byte("b"), Expires: c.t.Add(time.Hour)},
		{ID: [16]byte{3}, Body: []byte("c"), Expires: c.t.Add(time.Hour)},
	}
	for _, it := range items {
		if err := d.OutboxPut(it); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.OutboxPut(&OutboxItem{ID: [16]byte{2}}); !errors.Is(err, ErrDuplicateID) {
		t.Fatalf("duplicate ID: %v", err)
	}
	items[0].To, items[0].Attempts = []string{"p2"}, 1
	if err := d.OutboxUpdate(items[0]); err != nil {
		t.Fatal(err)
	}
	if err := d.OutboxDelete([16]byte{2}); err != nil {
		t.Fatal(err)
	}
	got, _ := d.Outbox()
	if len(got) != 2 || got[0].ID != items[0].ID || got[1].ID != items[2].ID || got[0].Attempts != 1 || len(got[0].To) != 1 {
		t.Fatalf("outbox = %+v", got)
	}
	c.t = c.t.Add(2 * time.Minute)
	gone, err := d.OutboxExpire()
	if err != nil || len(gone) != 1 || gone[0].ID != items[0].ID {
		t.Fatalf("expired = %+v, %v", gone, err)
	}
	if err := d.OutboxUpdate(items[0]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update of expired item: %v", err)
	}
}

func TestCirclesPeersCounters(t *testing.T) {
	c := &clock{time.Now()}
	d := open(t, c)
	id := [16]byte{9}
	if _, _, err := d.LoadCircle(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing circle: %v", err)
	}
	if err := d.SaveCircle(id, [][]byte{[]byte("op1"), []byte("op2")}, []byte("state1")); err != nil {
		t.Fatal(err)
	}
	if err := d.SaveCircle(id, [][]byte{[]byte("op2"), []byte("op3")}, []byte("state2")); err != nil {
		t.Fatal(err)
	}
	ops, st, err := d.LoadCircle(id)
	if err != nil || len(ops) != 3 || string(st) != "state2" {
		t.Fatalf("load = %q %q %v", ops, st, err)
	}
	if ids, _ := d.Circles(); len(ids) != 1 || ids[0] != id {
		t.Fatalf("circles = %v", ids)
	}
	if err := d.DeleteCircle(id); err != nil {
		t.Fatal(err)
	}
	if ids, _ := d.Circles(); len(ids) != 0 {
		t.Fatalf("circles after delete = %v", ids)
	}

	pc := d.PeerCache()
	ctx := context.Background()
	peerKeys := func() []string {
		var keys []string
		if err := pc.Load(ctx, func(k, v []byte) error { keys = append(keys, string(k)+"="+string(v)); return nil }); err != nil {
			t.Fatal(err)
		}
		return keys
	}
	for _, step := range []struct {
		name    string
		puts    map[string][]byte
		deletes []string
		want    []string
	}{
		{"puts", map[string][]byte{"p1": []byte("rec"), "p2": []byte("rec2")}, nil, []string{"p1=rec", "p2=rec2"}},
		{"replace and delete", map[string][]byte{"p2": []byte("new")}, []string{"p1", "missing"}, []string{"p2=new"}},
		{"delete all", nil, []string{"p2"}, nil},
	} {
		if err := pc.Apply(ctx, step.puts, step.deletes); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if got := peerKeys(); !slices.Equal(got, step.want) {
			t.Fatalf("%s: peer cache = %v, want %v", step.name, got, step.want)
		}
	}

	for want := uint64(1); want <= 3; want++ {
		if n, err := d.NextPresenceSeq(); err != nil || n != want {
			t.Fatalf("presence seq %d, want %d (%v)", n, want, err)
		}
	}
	for _, tt := range []struct {
		seq   uint64
		newer bool
	}{{5, true}, {5, false}, {4, false}, {6, true}} {
		if newer, _ := d.SeePresence("p", tt.seq); newer != tt.newer {
			t.Fatalf("SeePresence(%d) = %v, want %v", tt.seq, newer, tt.newer)
		}
	}
	_ = d.Count("dropped.forged", 2)
	_ = d.Count("dropped.forged", 1)
	if m, _ := d.Counters(); m["dropped.forged"] != 3 {
		t.Fatalf("counters = %v", m)
	}
	var buf bytes.Buffer
	if n, err := d.WriteTo(&buf); err != nil || n == 0 {
		t.Fatalf("snapshot: %d bytes, %v", n, err)
	}
}

func TestOpenLockedAndMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "remora.db")
	d, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
	_, err = Open(path, Options{LockTimeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	d.Close()
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, Options{}); err == nil || !bytes.Contains([]byte(err.Error()), []byte("chmod 600")) {
		t.Fatalf("world-readable store: %v", err)
	}
}

// TestCrashLosesNothing runs a child process that inserts messages and
// prints each ID once InboxPut returned, kills it with SIGKILL mid-stream,
// and checks that every reported message is there exactly once and that
// replaying all of them adds no duplicate.
func TestCrashLosesNothing(t *testing.T) {
	if os.Getenv("REMORA_STORE_CRASH_CHILD") != "" {
		return
	}
	path := filepath.Join(t.TempDir(), "remora.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$")
	cmd.Env = append(os.Environ(), "REMORA_STORE_CRASH_CHILD="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var acked []int
	for sc.Scan() {
		n, err := strconv.Atoi(sc.Text())
		if err != nil {
			continue
		}
		acked = append(acked, n)
		if len(acked) == 200 {
			cmd.Process.Kill() // SIGKILL, mid-write
			break
		}
	}
	cmd.Wait()
	if len(acked) < 200 {
		t.Fatalf("child reported only %d inserts", len(acked))
	}
	c := &clock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	d, err := Open(path, Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	got, err := d.InboxAfter(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, m := range got {
		seen[string(m.Body)]++
	}
	for _, n := range acked {
		if seen[fmt.Sprintf("message %d", n)] != 1 {
			t.Fatalf("message %d acknowledged by the store but found %d times", n, seen[fmt.Sprintf("message %d", n)])
		}
	}
	for b, k := range seen {
		if k != 1 {
			t.Fatalf("%s stored %d times", b, k)
		}
	}
	// At-least-once redelivery of everything adds nothing.
	for n := 0; n < len(got)+50; n++ {
		dup, err := d.InboxPut(msg(n, c.t.Add(24*time.Hour)))
		if err != nil {
			t.Fatal(err)
		}
		if _, stored := seen[fmt.Sprintf("message %d", n)]; stored != dup {
			t.Fatalf("message %d: dup=%v, stored before crash=%v", n, dup, stored)
		}
	}
	if cur, _ := d.Cursor("dir:a"); len(cur) == 0 {
		t.Fatal("cursor lost")
	}
}

// TestCrashChild is the child of TestCrashLosesNothing.
func TestCrashChild(t *testing.T) {
	path := os.Getenv("REMORA_STORE_CRASH_CHILD")
	if path == "" {
		t.Skip("helper process for TestCrashLosesNothing")
	}
	c := &clock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	d, err := Open(path, Options{Now: c.Now})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for n := 0; ; n++ {
		m := msg(n, c.t.Add(24*time.Hour))
		m.Channel, m.Cursor = "dir:a", []byte(strconv.Itoa(n))
		if _, err := d.InboxPut(m); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println(n)
	}
}

// TestRelayListPersists: the highest accepted relay-list sequence and its
// bundle survive a reopen, and a lower sequence never replaces them.
func TestRelayListPersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.db")
	d, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := d.SetRelayList(7, exp, []byte("bundle7")); err != nil {
		t.Fatal(err)
	}
	if err := d.SetRelayList(6, exp, []byte("bundle6")); err != nil {
		t.Fatal(err)
	}
	d = reopen(t, d, path)
	seq, e, b, err := d.RelayList()
	if err != nil || seq != 7 || !e.Equal(exp) || string(b) != "bundle7" {
		t.Fatalf("after reopen: %d %v %q %v", seq, e, b, err)
	}
}

// TestRelayDialsPersist: each volunteer relay's reservation outcomes add up
// and survive a reopen.
func TestRelayDialsPersist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.db")
	d, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	for i, ok := range []bool{true, true, false} {
		if err := d.RecordRelayDial("12D3KooWlive", ok, t0.Add(time.Duration(i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.RecordRelayDial("12D3KooWdead", false, t0); err != nil {
		t.Fatal(err)
	}
	d = reopen(t, d, path)
	got, err := d.RelayDials()
	if err != nil || len(got) != 2 {
		t.Fatalf("%+v %v", got, err)
	}
	dead, live := got[0], got[1]
	if live.Peer != "12D3KooWlive" || live.Successes != 2 || live.Failures != 1 || !live.LastSuccess.Equal(t0.Add(time.Minute)) || !live.LastFailure.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("live relay: %+v", live)
	}
	if dead.Peer != "12D3KooWdead" || dead.Successes != 0 || dead.Failures != 1 || !dead.LastSuccess.IsZero() {
		t.Fatalf("dead relay: %+v", dead)
	}
}

// TestRemember: a control message's dedupe key is seen until its time, is
// shared with the inbox's (a key InboxPut recorded is seen), and Forget
// lets a copy whose handling failed through again.
func TestRemember(t *testing.T) {
	c := &clock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	d := open(t, c)
	until := c.t.Add(time.Hour)
	if _, err := d.InboxPut(msg(1, until)); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		name     string
		key      string
		before   func()
		wantSeen bool
	}{
		{"first", "ack/1", nil, false},
		{"again", "ack/1", nil, true},
		{"an inbox key", "peer/1", nil, true},
		{"forgotten", "ack/1", func() { d.Forget([]byte("ack/1")) }, false},
		{"past its time", "ack/1", func() { c.t = until.Add(time.Second) }, false},
	} {
		if step.before != nil {
			step.before()
		}
		seen, err := d.Remember([]byte(step.key), until)
		if err != nil || seen != step.wantSeen {
			t.Errorf("%s: Remember(%s) = %v, %v; want seen %v", step.name, step.key, seen, err, step.wantSeen)
		}
	}
	if _, err := d.Remember(nil, until); err == nil {
		t.Error("Remember of an empty key: no error")
	}
}

func TestListenAddrs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "remora.db")
	d, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := d.ListenAddrs(); err != nil || got != nil {
		t.Fatalf("fresh store: %q, %v; want none", got, err)
	}
	want := []string{"/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"}
	if err := d.SetListenAddrs(want); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if d, err = Open(path, Options{}); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if got, err := d.ListenAddrs(); err != nil || !slices.Equal(got, want) {
		t.Fatalf("after reopening: %q, %v; want %q", got, err, want)
	}
}
