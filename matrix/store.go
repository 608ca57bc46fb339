package matrix

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/remora-p2p/remora/sdk"
)

// session is the saved login: reusing it means no new device on restart.
type session struct {
	Homeserver  string `json:"homeserver"`
	UserID      string `json:"user_id"`
	DeviceID    string `json:"device_id"`
	AccessToken string `json:"access_token,omitempty"` // only from a password login
}

// published remembers the ID a key got, for the declared idempotency window.
type published struct {
	ID   string    `json:"id"`
	Time time.Time `json:"t"`
}

// packed tracks the deleted parts of an event carrying several envelopes:
// the event is redacted once every part was deleted.
type packed struct {
	Parts   int       `json:"n"`
	Deleted []int     `json:"del,omitempty"`
	Time    time.Time `json:"t"`
}

type stateFile struct {
	Session   session              `json:"session"`
	Published map[string]published `json:"published,omitempty"`
	Packed    map[string]*packed   `json:"packed,omitempty"`
}

// stateStore is the channel's state in StateDir/matrix-state.json (mode 0600; it
// holds the access token of a password login).
type stateStore struct {
	path string
	mu   sync.Mutex
	s    stateFile
}

func openStore(dir string) (*stateStore, error) {
	if dir == "" {
		return nil, sdk.Errorf(sdk.CodeBadConfig, "matrix: no state dir: the device and pending transactions need one")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("matrix: state dir: %w", err)
	}
	st := &stateStore{path: filepath.Join(dir, "matrix-state.json")}
	b, err := os.ReadFile(st.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("matrix: read state: %w", err)
	default:
		if err := json.Unmarshal(b, &st.s); err != nil {
			return nil, fmt.Errorf("matrix: state file %s is corrupt (delete it to log in again with a new device): %w", st.path, err)
		}
	}
	if st.s.Published == nil {
		st.s.Published = map[string]published{}
	}
	if st.s.Packed == nil {
		st.s.Packed = map[string]*packed{}
	}
	return st, nil
}

func (st *stateStore) session() session {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.s.Session
}

func (st *stateStore) setSession(s session) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.s.Session = s
	return st.saveLocked()
}

// lookup returns the ID published under key within the window.
func (st *stateStore) lookup(key string, now time.Time) (string, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	p, ok := st.s.Published[key]
	if !ok || now.Sub(p.Time) > idempotencyWindow {
		return "", false
	}
	return p.ID, true
}

// record remembers published keys (and packed events), prunes what is older
// than the window, and saves.
func (st *stateStore) record(keys map[string]string, packs map[string]int, now time.Time) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	for k, v := range keys {
		if k != "" {
			st.s.Published[k] = published{ID: v, Time: now}
		}
	}
	for ev, n := range packs {
		st.s.Packed[ev] = &packed{Parts: n, Time: now}
	}
	for k, p := range st.s.Published {
		if now.Sub(p.Time) > idempotencyWindow {
			delete(st.s.Published, k)
		}
	}
	return st.saveLocked()
}

// deletePart marks part i of a packed event deleted; it returns whether
// every part is now deleted, and false/known=false for unknown events.
func (st *stateStore) deletePart(ev string, i, parts int) (all bool, err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	p := st.s.Packed[ev]
	if p == nil {
		p = &packed{Parts: parts, Time: time.Now()}
		st.s.Packed[ev] = p
	}
	seen := false
	for _, d := range p.Deleted {
		seen = seen || d == i
	}
	if !seen {
		p.Deleted = append(p.Deleted, i)
	}
	all = len(p.Deleted) >= p.Parts
	if all {
		delete(st.s.Packed, ev)
	}
	return all, st.saveLocked()
}

func (st *stateStore) packedParts(ev string) int {
	st.mu.Lock()
	defer st.mu.Unlock()
	if p := st.s.Packed[ev]; p != nil {
		return p.Parts
	}
	return 0
}

func (st *stateStore) saveLocked() error {
	b, err := json.Marshal(&st.s)
	if err != nil {
		return fmt.Errorf("matrix: save state: %w", err)
	}
	tmp := st.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("matrix: save state: %w", err)
	}
	if err := os.Rename(tmp, st.path); err != nil {
		return fmt.Errorf("matrix: save state: %w", err)
	}
	return nil
}
