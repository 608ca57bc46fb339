package circle

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// seedOps returns valid ops of every kind.
func seedOps(t testing.TB) [][]byte {
	c := &clock{time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	a, _, err := Create(newKeyring(t, c), "friends", "alice", true, opts(c))
	if err != nil {
		t.Fatal(err)
	}
	b := newKeyring(t, c)
	steps := []func() (*Update, error){
		func() (*Update, error) { return a.AddMember(b.Identity().PeerID(), b.Current(), "bob", RoleMember) },
		func() (*Update, error) { return a.SetRole(b.Identity().PeerID(), RoleAdmin) },
		func() (*Update, error) {
			return a.SetChannel(Channel{ID: "m1", Kind: "matrix", Address: "!room:example.org"})
		},
		func() (*Update, error) { return a.RemoveChannel("m1") },
		func() (*Update, error) { return a.SetSettings("renamed", false) },
		func() (*Update, error) { return a.RemoveMember(b.Identity().PeerID()) },
	}
	for _, s := range steps {
		if _, err := s(); err != nil {
			t.Fatal(err)
		}
	}
	return a.Ops()
}

func FuzzRosterOp(f *testing.F) {
	ops := seedOps(f)
	for _, o := range ops {
		f.Add(o)
	}
	genesis := ops[0]
	f.Fuzz(func(t *testing.T, raw []byte) {
		o, err := ParseOp(raw)
		if err != nil {
			return
		}
		// Whatever parses is canonical and verified: it re-encodes to the
		// same bytes, and a log takes or refuses it without panicking.
		if !bytes.Equal(append([]byte{opVersion}, o.body()...), raw[:len(raw)-64]) {
			t.Fatal("parsed op does not re-encode to its bytes")
		}
		l, err := NewLog(genesis)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = l.Add(raw)
		_ = l.Roster().Members()
	})
}

func FuzzInvite(f *testing.F) {
	c := &clock{time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	a, _, err := Create(newKeyring(f, c), "friends", "alice", false, opts(c))
	if err != nil {
		f.Fatal(err)
	}
	for _, hint := range []string{"", "matrix:!room:example.org", "imap:list@example.org"} {
		inv, err := a.NewInvite(hint, time.Hour)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(inv.String())
	}
	f.Add("remora1")
	f.Add("REMORA1AAAA")
	f.Fuzz(func(t *testing.T, s string) {
		inv, err := ParseInvite(s)
		if err != nil {
			return
		}
		again, err := ParseInvite(inv.String())
		if err != nil || again.Token != inv.Token || again.Inviter != inv.Inviter || again.Hint != inv.Hint {
			t.Fatalf("re-encoded invite does not parse back: %v", err)
		}
	})
}

// TestWriteFuzzSeeds regenerates testdata/fuzz when REMORA_WRITE_SEEDS=1.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("REMORA_WRITE_SEEDS") == "" {
		t.Skip("set REMORA_WRITE_SEEDS=1 to regenerate testdata/fuzz")
	}
	write := func(target string, i int, lit string) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		body := "go test fuzz v1\n" + lit + "\n"
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed%02d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, o := range seedOps(t) {
		write("FuzzRosterOp", i, fmt.Sprintf("[]byte(%q)", o))
	}
	c := &clock{time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	a, _, _ := Create(newKeyring(t, c), "friends", "alice", false, opts(c))
	inv, _ := a.NewInvite("git:https://git.example.org/circle.git", time.Hour)
	write("FuzzInvite", 0, fmt.Sprintf("string(%q)", inv.String()))
	s := inv.String()
	write("FuzzInvite", 1, fmt.Sprintf("string(%q)", s[:len(s)-3]))
}

func FuzzKeyMsg(f *testing.F) {
	for _, m := range []KeyMsg{
		{Kind: MsgSenderKey, Circle: ID{1}, Epoch: Epoch{2}, Day: 7, Key: [32]byte{3}},
		{Kind: MsgContribution, Circle: ID{1}, Op: Hash{4}, Key: [32]byte{5}},
		{Kind: MsgKeyRequest, Circle: ID{1}, Epoch: Epoch{6}},
		{Kind: MsgKeyRequest, Circle: ID{1}, Op: Hash{7}},
	} {
		f.Add(m.Marshal())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseKeyMsg(b)
		if err != nil {
			return
		}
		if !bytes.Equal(m.Marshal(), b) {
			t.Fatal("key message does not re-encode to its bytes")
		}
	})
}
