package identity

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) Now() time.Time { return c.t }

func testOpts(c *clock) Options {
	return Options{Now: c.Now, ScryptWorkFactor: 10, Logger: slog.New(slog.DiscardHandler)}
}

func TestPeerIDMatchesKey(t *testing.T) {
	id, err := Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := PublicKeyOf(id.PeerID())
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(id.PublicKey()) {
		t.Fatal("peer ID does not embed the identity key")
	}
	msg := []byte("hello")
	if err := Verify(id.PeerID(), msg, id.Sign(msg)); err != nil {
		t.Fatal(err)
	}
	if err := Verify(id.PeerID(), []byte("hellO"), id.Sign(msg)); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("tampered message: got %v, want ErrBadSignature", err)
	}
}

func TestPrekey(t *testing.T) {
	c := &clock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	k, err := Create(t.TempDir(), testOpts(c))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := Generate(nil)
	good := k.Current().Marshal()
	if len(good) != PrekeySize {
		t.Fatalf("prekey is %d bytes, want %d", len(good), PrekeySize)
	}
	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 1; return b }
	tests := []struct {
		name     string
		raw      []byte
		owner    *Identity
		parseErr bool
		verify   bool
	}{
		{"valid", good, k.Identity(), false, true},
		{"wrong owner", good, other, false, false},
		{"flipped key", flip(5), k.Identity(), false, false},
		{"flipped expiry", flip(48), k.Identity(), false, false},
		{"flipped signature", flip(100), k.Identity(), false, false},
		{"truncated", good[:50], k.Identity(), true, false},
		{"bad version", flip(0), k.Identity(), true, false},
		{"empty", nil, k.Identity(), true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParsePrekey(tt.raw)
			if (err != nil) != tt.parseErr {
				t.Fatalf("parse error = %v, want error %v", err, tt.parseErr)
			}
			if err != nil {
				if !errors.Is(err, ErrMalformedPrekey) {
					t.Fatalf("parse error %v is not ErrMalformedPrekey", err)
				}
				return
			}
			if err := p.Verify(tt.owner.PeerID()); (err == nil) != tt.verify {
				t.Fatalf("verify = %v, want ok=%v", err, tt.verify)
			}
		})
	}
}

func TestKeyringRotation(t *testing.T) {
	c := &clock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	dir := t.TempDir()
	k, err := Create(dir, testOpts(c))
	if err != nil {
		t.Fatal(err)
	}
	first := k.Current()
	if rotated, err := k.Rotate(); err != nil || rotated {
		t.Fatalf("Rotate right after create: rotated=%v err=%v", rotated, err)
	}
	c.t = c.t.Add(DefaultRotateEvery)
	if rotated, err := k.Rotate(); err != nil || !rotated {
		t.Fatalf("Rotate after a week: rotated=%v err=%v", rotated, err)
	}
	if k.Current().ID() == first.ID() {
		t.Fatal("current prekey did not change")
	}
	if _, ok := k.BoxKey(first.ID()); !ok {
		t.Fatal("previous private half dropped before expiry + grace")
	}
	// Reloading keeps both.
	k2, err := Load(dir, testOpts(c))
	if err != nil {
		t.Fatal(err)
	}
	if got := len(k2.BoxKeys()); got != 2 {
		t.Fatalf("reloaded keyring holds %d box keys, want 2", got)
	}
	if k2.Identity().PeerID() != k.Identity().PeerID() {
		t.Fatal("reloaded identity differs")
	}
	// Past the first key's expiry + grace (and a further weekly rotation).
	c.t = first.Expires.Add(DefaultGrace)
	if _, err := k2.Rotate(); err != nil {
		t.Fatal(err)
	}
	if _, ok := k2.BoxKey(first.ID()); ok {
		t.Fatal("private half kept after expiry + grace")
	}
	k3, err := Load(dir, testOpts(c))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := k3.BoxKey(first.ID()); ok {
		t.Fatal("deleted private half is still in the key file")
	}
	raw, _ := os.ReadFile(filepath.Join(dir, prekeysFile))
	if bytes.Contains(raw, []byte(first.Public.Bytes())) {
		t.Fatal("prekeys file still holds the deleted key")
	}
}

// TestLateRotationKeepsTheOldKey: a device that rotates long after its
// prekey expired (it was off for two months, or its clock jumped) keeps the
// old private half Grace past the rotation, since members went on sealing
// to the old key until they learn the new one. Before, the old key was
// deleted in the same Rotate that replaced it.
func TestLateRotationKeepsTheOldKey(t *testing.T) {
	c := &clock{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	k, err := Create(t.TempDir(), testOpts(c))
	if err != nil {
		t.Fatal(err)
	}
	first := k.Current()
	c.t = c.t.Add(60 * 24 * time.Hour)
	if rotated, err := k.Rotate(); err != nil || !rotated {
		t.Fatalf("rotate after 60 days: rotated=%v err=%v", rotated, err)
	}
	if _, ok := k.BoxKey(first.ID()); !ok {
		t.Fatal("the replaced prekey's private half was deleted at once")
	}
	c.t = c.t.Add(DefaultGrace)
	if _, err := k.Rotate(); err != nil {
		t.Fatal(err)
	}
	if _, ok := k.BoxKey(first.ID()); ok {
		t.Fatal("the replaced prekey's private half outlived its replacement plus grace")
	}
}

func TestKeyFilePermissions(t *testing.T) {
	c := &clock{time.Now()}
	for _, tt := range []struct {
		file string
		mode os.FileMode
		ok   bool
	}{
		{identityFile, 0o600, true},
		{identityFile, 0o400, true},
		{identityFile, 0o640, false},
		{identityFile, 0o604, false},
		{prekeysFile, 0o644, false},
	} {
		t.Run(tt.file+"_"+tt.mode.String(), func(t *testing.T) {
			dir := t.TempDir()
			if _, err := Create(dir, testOpts(c)); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{identityFile, prekeysFile} {
				st, err := os.Stat(filepath.Join(dir, f))
				if err != nil {
					t.Fatal(err)
				}
				if st.Mode().Perm() != 0o600 {
					t.Fatalf("%s created with mode %v, want 0600", f, st.Mode().Perm())
				}
			}
			path := filepath.Join(dir, tt.file)
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			_, err := Load(dir, testOpts(c))
			if tt.ok {
				if err != nil {
					t.Fatalf("Load with mode %v: %v", tt.mode, err)
				}
				return
			}
			var pe *PermissionError
			if !errors.As(err, &pe) || !errors.Is(err, ErrInsecureKeyFile) {
				t.Fatalf("Load with mode %v: got %v, want *PermissionError", tt.mode, err)
			}
			if !strings.Contains(err.Error(), "chmod 600 "+path) {
				t.Fatalf("error does not say how to fix it: %v", err)
			}
		})
	}
}

func TestOpenCreatesOnce(t *testing.T) {
	c := &clock{time.Now()}
	dir := filepath.Join(t.TempDir(), "keys")
	a, err := Open(dir, testOpts(c))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(dir, testOpts(c))
	if err != nil {
		t.Fatal(err)
	}
	if a.Identity().PeerID() != b.Identity().PeerID() {
		t.Fatal("second Open made a new identity")
	}
	if _, err := Create(dir, testOpts(c)); !errors.Is(err, ErrExists) {
		t.Fatalf("Create over an existing keyring: %v, want ErrExists", err)
	}
	if _, err := Load(t.TempDir(), testOpts(c)); !errors.Is(err, ErrNoKeyring) {
		t.Fatalf("Load of an empty dir: %v, want ErrNoKeyring", err)
	}
	st, _ := os.Stat(dir)
	if st.Mode().Perm() != 0o700 {
		t.Fatalf("keyring dir mode %v, want 0700", st.Mode().Perm())
	}
}

func TestBackupRestore(t *testing.T) {
	c := &clock{time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
	k, err := Create(t.TempDir(), testOpts(c))
	if err != nil {
		t.Fatal(err)
	}
	c.t = c.t.Add(DefaultRotateEvery)
	if _, err := k.Rotate(); err != nil {
		t.Fatal(err)
	}
	state := map[string][]byte{"store": []byte("bbolt snapshot bytes")}
	var buf bytes.Buffer
	if err := k.Backup(&buf, "correct horse battery staple", state); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(buf.Bytes(), state["store"]) || bytes.Contains(buf.Bytes(), k.Identity().PrivateKey().Seed()) {
		t.Fatal("backup holds plaintext")
	}
	if err := k.Backup(&bytes.Buffer{}, "", nil); err == nil {
		t.Fatal("backup with an empty passphrase accepted")
	}

	t.Run("wrong passphrase", func(t *testing.T) {
		_, _, err := Restore(bytes.NewReader(buf.Bytes()), "wrong", t.TempDir(), testOpts(c))
		if !errors.Is(err, ErrBadPassphrase) {
			t.Fatalf("got %v, want ErrBadPassphrase", err)
		}
	})
	t.Run("garbage", func(t *testing.T) {
		_, _, err := Restore(strings.NewReader("not an age file"), "x", t.TempDir(), testOpts(c))
		if !errors.Is(err, ErrBadBackup) {
			t.Fatalf("got %v, want ErrBadBackup", err)
		}
	})
	t.Run("into existing keyring", func(t *testing.T) {
		_, _, err := Restore(bytes.NewReader(buf.Bytes()), "correct horse battery staple", k.Dir(), testOpts(c))
		if !errors.Is(err, ErrExists) {
			t.Fatalf("got %v, want ErrExists", err)
		}
	})
	t.Run("round trip", func(t *testing.T) {
		dir := t.TempDir()
		r, got, err := Restore(bytes.NewReader(buf.Bytes()), "correct horse battery staple", dir, testOpts(c))
		if err != nil {
			t.Fatal(err)
		}
		if r.Identity().PeerID() != k.Identity().PeerID() {
			t.Fatal("restored identity differs")
		}
		if !bytes.Equal(got["store"], state["store"]) {
			t.Fatalf("restored state %q, want %q", got["store"], state["store"])
		}
		if len(r.BoxKeys()) != 2 || r.Current().ID() != k.Current().ID() {
			t.Fatal("restored box keys differ")
		}
		if _, err := Load(dir, testOpts(c)); err != nil {
			t.Fatalf("restored keyring does not load: %v", err)
		}
	})
}

func FuzzParsePrekey(f *testing.F) {
	id, _ := Generate(nil)
	k := &Keyring{id: id, opts: Options{}}
	k.opts.fill()
	if err := k.newPrekey(); err != nil {
		f.Fatal(err)
	}
	f.Add(k.boxes[0].Marshal())
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePrekey(b)
		if err != nil {
			return
		}
		if !bytes.Equal(p.Marshal(), b) {
			t.Fatal("parse/marshal not a round trip")
		}
		_ = p.Verify(id.PeerID())
	})
}
