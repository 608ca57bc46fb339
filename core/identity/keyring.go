package identity

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// Default timings for box prekeys.
const (
	DefaultRotateEvery = 7 * 24 * time.Hour
	DefaultGrace       = 14 * 24 * time.Hour
)

const (
	identityFile = "identity.key"
	prekeysFile  = "prekeys.json"
	pemType      = "REMORA IDENTITY KEY"
)

// Errors returned when opening a keyring.
var (
	ErrNoKeyring = errors.New("identity: no keyring in this directory")
	ErrExists    = errors.New("identity: a keyring already exists in this directory")
)

// Options configure a Keyring. The zero value is usable.
type Options struct {
	Now         func() time.Time // clock; time.Now when nil
	Rand        io.Reader        // randomness; crypto/rand when nil
	RotateEvery time.Duration    // prekey lifetime; DefaultRotateEvery when 0
	Grace       time.Duration    // private half kept this long after expiry; DefaultGrace when 0
	Logger      *slog.Logger     // slog.Default() when nil
	// ScryptWorkFactor is log2 of the scrypt cost for backups; age's default
	// when 0. Tests lower it.
	ScryptWorkFactor int
}

func (o *Options) fill() {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.RotateEvery <= 0 {
		o.RotateEvery = DefaultRotateEvery
	}
	if o.Grace <= 0 {
		o.Grace = DefaultGrace
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Keyring is a device's identity and box keys, persisted in one directory.
// It is safe for concurrent use.
type Keyring struct {
	dir  string
	opts Options
	id   *Identity

	mu    sync.Mutex
	boxes []BoxKey // newest first
}

type prekeyJSON struct {
	Prekey  []byte `json:"prekey"`
	Private []byte `json:"private"`
}

// Create makes a new identity and first prekey in dir (created 0700 if
// missing). It fails with ErrExists if dir already holds a keyring.
func Create(dir string, opts Options) (*Keyring, error) {
	opts.fill()
	if _, err := os.Stat(filepath.Join(dir, identityFile)); err == nil {
		return nil, fmt.Errorf("identity: create in %s: %w", dir, ErrExists)
	}
	id, err := Generate(opts.Rand)
	if err != nil {
		return nil, err
	}
	k := &Keyring{dir: dir, opts: opts, id: id}
	if err := k.newPrekey(); err != nil {
		return nil, err
	}
	if err := k.saveAll(); err != nil {
		return nil, err
	}
	return k, nil
}

// Load reads the keyring in dir. It fails with ErrNoKeyring if there is
// none, and with a *PermissionError (errors.Is ErrInsecureKeyFile) if a key
// file is readable by others. Expired private halves are dropped.
func Load(dir string, opts Options) (*Keyring, error) {
	opts.fill()
	raw, err := readKeyFile(filepath.Join(dir, identityFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("identity: load %s: %w", dir, ErrNoKeyring)
	}
	if err != nil {
		return nil, fmt.Errorf("identity: load: %w", err)
	}
	blk, _ := pem.Decode(raw)
	if blk == nil || blk.Type != pemType || len(blk.Bytes) != ed25519.SeedSize {
		return nil, fmt.Errorf("identity: load %s: not a remora identity key", filepath.Join(dir, identityFile))
	}
	id, err := FromPrivateKey(ed25519.NewKeyFromSeed(blk.Bytes))
	if err != nil {
		return nil, err
	}
	k := &Keyring{dir: dir, opts: opts, id: id}
	raw, err = readKeyFile(filepath.Join(dir, prekeysFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("identity: load: %w", err)
	}
	if err == nil {
		boxes, err := decodeBoxes(id, raw)
		if err != nil {
			return nil, fmt.Errorf("identity: load %s: %w", filepath.Join(dir, prekeysFile), err)
		}
		k.boxes = boxes
	}
	if _, err := k.Rotate(); err != nil {
		return nil, err
	}
	return k, nil
}

// Open loads the keyring in dir, or creates one if there is none.
func Open(dir string, opts Options) (*Keyring, error) {
	k, err := Load(dir, opts)
	if errors.Is(err, ErrNoKeyring) {
		return Create(dir, opts)
	}
	return k, err
}

func decodeBoxes(id *Identity, raw []byte) ([]BoxKey, error) {
	var list []prekeyJSON
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, err
	}
	boxes := make([]BoxKey, 0, len(list))
	for _, e := range list {
		p, err := ParsePrekey(e.Prekey)
		if err != nil {
			return nil, err
		}
		if err := p.Verify(id.PeerID()); err != nil {
			return nil, err
		}
		priv, err := ecdh.X25519().NewPrivateKey(e.Private)
		if err != nil {
			return nil, fmt.Errorf("box key %s: %w", p.ID(), err)
		}
		if !priv.PublicKey().Equal(p.Public) {
			return nil, fmt.Errorf("box key %s: private half does not match", p.ID())
		}
		boxes = append(boxes, BoxKey{Prekey: p, Private: priv})
	}
	sort.Slice(boxes, func(i, j int) bool { return boxes[i].Created.After(boxes[j].Created) })
	return boxes, nil
}

func encodeBoxes(boxes []BoxKey) ([]byte, error) {
	list := make([]prekeyJSON, len(boxes))
	for i, b := range boxes {
		list[i] = prekeyJSON{Prekey: b.Marshal(), Private: b.Private.Bytes()}
	}
	return json.MarshalIndent(list, "", "  ")
}

func (k *Keyring) saveAll() error {
	if err := os.MkdirAll(k.dir, 0o700); err != nil {
		return fmt.Errorf("identity: create %s: %w", k.dir, err)
	}
	seed := k.id.priv.Seed()
	if err := writeKeyFile(filepath.Join(k.dir, identityFile), pem.EncodeToMemory(&pem.Block{Type: pemType, Bytes: seed})); err != nil {
		return fmt.Errorf("identity: write identity key: %w", err)
	}
	return k.saveBoxes()
}

func (k *Keyring) saveBoxes() error {
	raw, err := encodeBoxes(k.boxes)
	if err != nil {
		return fmt.Errorf("identity: encode prekeys: %w", err)
	}
	if err := writeKeyFile(filepath.Join(k.dir, prekeysFile), raw); err != nil {
		return fmt.Errorf("identity: write prekeys: %w", err)
	}
	return nil
}

func (k *Keyring) newPrekey() error {
	priv, err := ecdh.X25519().GenerateKey(k.opts.Rand)
	if err != nil {
		return fmt.Errorf("identity: generate box key: %w", err)
	}
	now := k.opts.Now()
	p := k.id.SignPrekey(priv.PublicKey(), now, now.Add(k.opts.RotateEvery))
	k.boxes = append([]BoxKey{{Prekey: p, Private: priv}}, k.boxes...)
	return nil
}

// Identity is the device identity.
func (k *Keyring) Identity() *Identity { return k.id }

// Dir is the keyring's directory.
func (k *Keyring) Dir() string { return k.dir }

// Current is the newest prekey: the one to advertise and seal to.
func (k *Keyring) Current() Prekey {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.boxes[0].Prekey
}

// BoxKeys returns the box keys whose private halves are still held, newest
// first: a recipient tries them in this order.
func (k *Keyring) BoxKeys() []BoxKey {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]BoxKey(nil), k.boxes...)
}

// BoxKey returns the held box key with the given ID.
func (k *Keyring) BoxKey(id KeyID) (BoxKey, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, b := range k.boxes {
		if b.ID() == id {
			return b, true
		}
	}
	return BoxKey{}, false
}

// Rotate makes a new prekey if the current one has expired and deletes
// private halves whose expiry, or replacement if later, plus grace has
// passed. It reports whether the
// current prekey changed. Call it periodically (hourly is plenty).
func (k *Keyring) Rotate() (bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.opts.Now()
	changed, rotated := false, false
	if len(k.boxes) == 0 || !now.Before(k.boxes[0].Expires) {
		if err := k.newPrekey(); err != nil {
			return false, err
		}
		changed, rotated = true, true
		k.opts.Logger.Info("identity: rotated box prekey", "key_id", k.boxes[0].ID().String())
	}
	kept := k.boxes[:1]
	for i, b := range k.boxes[1:] {
		// Members seal to a prekey until they learn its successor, so a
		// private half lives Grace past the later of its expiry and its
		// replacement: a device that rotates late (it was off, or its clock
		// jumped) still opens what was sealed to the old key meanwhile.
		retired := b.Expires
		if next := k.boxes[i].Created; next.After(retired) {
			retired = next
		}
		if now.Before(retired.Add(k.opts.Grace)) {
			kept = append(kept, b)
			continue
		}
		changed = true
		k.opts.Logger.Info("identity: deleted expired box key", "key_id", b.ID().String())
	}
	k.boxes = kept
	if changed {
		if err := k.saveBoxes(); err != nil {
			return rotated, err
		}
	}
	return rotated, nil
}
