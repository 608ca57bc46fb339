package mastodon

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// journalKeep is how long the journal remembers a key.
const journalKeep = 24 * time.Hour

// attempt is what the journal knows of an idempotency key: when it was
// first tried and, once posted, the status ID.
type attempt struct {
	first time.Time
	id    string
}

// journal remembers idempotency keys in the state directory (JSON lines,
// appended; compacted on open), so that a retry after a restart still
// finds its first attempt: with a status ID it answers without a request,
// and an attempt older than the server's window triggers the own-status
// check. Without a state directory it lives in memory only.
type journal struct {
	mu   sync.Mutex
	m    map[string]attempt
	file *os.File
	// syncBegin makes a first attempt durable before the post is sent: on
	// a server that ignores Idempotency-Key the journal is all that tells
	// a retry to look for the post instead of posting again.
	syncBegin bool
}

type journalLine struct {
	Key   string    `json:"k"`
	First time.Time `json:"t"`
	ID    string    `json:"id,omitempty"`
}

func openJournal(dir string, now time.Time, syncBegin bool) (*journal, error) {
	j := &journal{m: map[string]attempt{}, syncBegin: syncBegin}
	if dir == "" {
		return j, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("mastodon: journal: %w", err)
	}
	path := filepath.Join(dir, "mastodon-published.jsonl")
	if f, err := os.Open(path); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var l journalLine
			if json.Unmarshal(sc.Bytes(), &l) != nil || l.Key == "" {
				continue // a torn last line after a crash
			}
			a := j.m[l.Key]
			if a.first.IsZero() || l.First.Before(a.first) {
				a.first = l.First
			}
			if l.ID != "" {
				a.id = l.ID
			}
			j.m[l.Key] = a
		}
		f.Close()
	}
	for k, a := range j.m {
		if now.Sub(a.first) > journalKeep {
			delete(j.m, k)
		}
	}
	// Compact: rewrite what is kept, then append to it.
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("mastodon: journal: %w", err)
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for k, a := range j.m {
		enc.Encode(journalLine{Key: k, First: a.first, ID: a.id})
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return nil, fmt.Errorf("mastodon: journal: %w", err)
	}
	f.Close()
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("mastodon: journal: %w", err)
	}
	if j.file, err = os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o600); err != nil {
		return nil, fmt.Errorf("mastodon: journal: %w", err)
	}
	return j, nil
}

// begin records a first attempt of key at now unless one is known; it
// returns what was known before.
func (j *journal) begin(key string, now time.Time) (attempt, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	a, seen := j.m[key]
	if !seen {
		j.m[key] = attempt{first: now}
		j.append(journalLine{Key: key, First: now})
		if j.syncBegin && j.file != nil {
			j.file.Sync() // best effort, as append
		}
	}
	return a, seen
}

// done records key's status ID.
func (j *journal) done(key, id string, now time.Time) {
	j.mu.Lock()
	defer j.mu.Unlock()
	a := j.m[key]
	if a.first.IsZero() {
		a.first = now
	}
	a.id = id
	j.m[key] = a
	j.append(journalLine{Key: key, First: a.first, ID: id})
}

// set replaces what is known of key (tests).
func (j *journal) set(key string, a attempt) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.m[key] = a
}

func (j *journal) append(l journalLine) {
	if j.file == nil {
		return
	}
	b, _ := json.Marshal(l)
	j.file.Write(append(b, '\n')) // best effort: losing it costs a duplicate post at worst, which core dedupes
}

func (j *journal) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.file == nil {
		return nil
	}
	err := j.file.Close()
	j.file = nil
	return err
}
