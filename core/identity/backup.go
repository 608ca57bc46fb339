package identity

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"filippo.io/age"
)

const backupFormat = "remora-backup/1"

// ErrBadPassphrase means a backup could not be decrypted with the passphrase.
var ErrBadPassphrase = errors.New("identity: wrong passphrase for this backup (or not a remora backup)")

// ErrBadBackup means a decrypted backup is not in a format this version reads.
var ErrBadBackup = errors.New("identity: not a remora backup")

type backupJSON struct {
	Format  string            `json:"format"`
	Created time.Time         `json:"created"`
	Seed    []byte            `json:"identity_seed"`
	Prekeys []prekeyJSON      `json:"prekeys"`
	State   map[string][]byte `json:"state,omitempty"`
}

// Backup writes an age file, encrypted with passphrase (scrypt), holding the
// identity, the box keys and state: named blobs the caller needs to come
// back (the node passes its store snapshot). The passphrase must not be empty.
func (k *Keyring) Backup(w io.Writer, passphrase string, state map[string][]byte) error {
	if passphrase == "" {
		return errors.New("identity: backup: empty passphrase; choose a long one, it is the only protection of this file")
	}
	rcpt, err := age.NewScryptRecipient(passphrase)
	if err != nil {
		return fmt.Errorf("identity: backup: %w", err)
	}
	if k.opts.ScryptWorkFactor > 0 {
		rcpt.SetWorkFactor(k.opts.ScryptWorkFactor)
	}
	k.mu.Lock()
	b := backupJSON{Format: backupFormat, Created: k.opts.Now().UTC(), Seed: k.id.priv.Seed(), State: state}
	for _, bk := range k.boxes {
		b.Prekeys = append(b.Prekeys, prekeyJSON{Prekey: bk.Marshal(), Private: bk.Private.Bytes()})
	}
	k.mu.Unlock()
	plain, err := json.Marshal(b)
	if err != nil {
		return fmt.Errorf("identity: backup: %w", err)
	}
	aw, err := age.Encrypt(w, rcpt)
	if err != nil {
		return fmt.Errorf("identity: backup: %w", err)
	}
	if _, err := aw.Write(plain); err != nil {
		return fmt.Errorf("identity: backup: %w", err)
	}
	if err := aw.Close(); err != nil {
		return fmt.Errorf("identity: backup: %w", err)
	}
	return nil
}

// Restore decrypts a backup written by Backup, writes the keyring into dir
// (which must not already hold one: ErrExists) and returns it with the saved
// state blobs. A wrong passphrase gives ErrBadPassphrase.
func Restore(r io.Reader, passphrase, dir string, opts Options) (*Keyring, map[string][]byte, error) {
	opts.fill()
	if _, err := os.Stat(filepath.Join(dir, identityFile)); err == nil {
		return nil, nil, fmt.Errorf("identity: restore into %s: %w; restore into an empty directory", dir, ErrExists)
	}
	id, err := age.NewScryptIdentity(passphrase)
	if err != nil {
		return nil, nil, fmt.Errorf("identity: restore: %w", err)
	}
	ar, err := age.Decrypt(r, id)
	if err != nil {
		var nm *age.NoIdentityMatchError
		if errors.As(err, &nm) {
			return nil, nil, ErrBadPassphrase
		}
		return nil, nil, fmt.Errorf("identity: restore: %w: %v", ErrBadBackup, err)
	}
	plain, err := io.ReadAll(ar)
	if err != nil {
		return nil, nil, fmt.Errorf("identity: restore: %w", err)
	}
	var b backupJSON
	dec := json.NewDecoder(bytes.NewReader(plain))
	if err := dec.Decode(&b); err != nil || b.Format != backupFormat || len(b.Seed) != ed25519.SeedSize {
		return nil, nil, fmt.Errorf("identity: restore: %w", ErrBadBackup)
	}
	ident, err := FromPrivateKey(ed25519.NewKeyFromSeed(b.Seed))
	if err != nil {
		return nil, nil, err
	}
	rawBoxes, err := json.Marshal(b.Prekeys)
	if err != nil {
		return nil, nil, fmt.Errorf("identity: restore: %w", err)
	}
	boxes, err := decodeBoxes(ident, rawBoxes)
	if err != nil {
		return nil, nil, fmt.Errorf("identity: restore: %w: %v", ErrBadBackup, err)
	}
	k := &Keyring{dir: dir, opts: opts, id: ident, boxes: boxes}
	if err := k.saveAll(); err != nil {
		return nil, nil, err
	}
	if _, err := k.Rotate(); err != nil {
		return nil, nil, err
	}
	return k, b.State, nil
}
