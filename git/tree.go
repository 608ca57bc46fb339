package git

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// writeBlob stores data as a blob and returns its hash.
func writeBlob(s storer.EncodedObjectStorer, data []byte) (plumbing.Hash, error) {
	obj := s.NewEncodedObject()
	obj.SetType(plumbing.BlobObject)
	w, err := obj.Writer()
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("git: write blob: %w", err)
	}
	if _, err := w.Write(data); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("git: write blob: %w", err)
	}
	if err := w.Close(); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("git: write blob: %w", err)
	}
	return s.SetEncodedObject(obj)
}

// readBlob reads a blob of at most limit bytes.
func readBlob(s storer.EncodedObjectStorer, h plumbing.Hash, limit int) ([]byte, error) {
	obj, err := s.EncodedObject(plumbing.BlobObject, h)
	if err != nil {
		return nil, fmt.Errorf("git: read blob %s: %w", h, err)
	}
	if obj.Size() > int64(limit) {
		return nil, fmt.Errorf("git: blob %s has %d bytes: %w", h, obj.Size(), errOversized)
	}
	r, err := obj.Reader()
	if err != nil {
		return nil, fmt.Errorf("git: read blob %s: %w", h, err)
	}
	defer r.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(r, int64(limit)+1)); err != nil {
		return nil, fmt.Errorf("git: read blob %s: %w", h, err)
	}
	if buf.Len() > limit {
		return nil, fmt.Errorf("git: blob %s: %w", h, errOversized)
	}
	return buf.Bytes(), nil
}

var errOversized = errors.New("larger than max_payload")

// readTree returns the entries of tree h; the zero hash is the empty tree.
func readTree(s storer.EncodedObjectStorer, h plumbing.Hash) ([]object.TreeEntry, error) {
	if h.IsZero() {
		return nil, nil
	}
	t, err := object.GetTree(s, h)
	if err != nil {
		return nil, fmt.Errorf("git: read tree %s: %w", h, err)
	}
	return t.Entries, nil
}

// subtree returns the hash of the directory name in tree h, or the zero hash
// when there is no such directory.
func subtree(s storer.EncodedObjectStorer, h plumbing.Hash, name string) (plumbing.Hash, error) {
	entries, err := readTree(s, h)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	for _, e := range entries {
		if e.Name == name && e.Mode == filemode.Dir {
			return e.Hash, nil
		}
	}
	return plumbing.ZeroHash, nil
}

// editTree returns the tree base with edits applied. Each edit maps a slash
// path to a blob hash, or to the zero hash to delete the entry (file or
// directory) at that path. Directories left empty disappear; the result is
// the zero hash when the whole tree is empty.
func editTree(s storer.EncodedObjectStorer, base plumbing.Hash, edits map[string]plumbing.Hash) (plumbing.Hash, error) {
	entries, err := readTree(s, base)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	byName := make(map[string]object.TreeEntry, len(entries))
	for _, e := range entries {
		byName[e.Name] = e
	}
	leaves := map[string]plumbing.Hash{}
	dirs := map[string]map[string]plumbing.Hash{}
	for p, h := range edits {
		first, rest, nested := strings.Cut(p, "/")
		if first == "" || first == "." || first == ".." {
			return plumbing.ZeroHash, fmt.Errorf("git: edit tree: bad path %q", p)
		}
		if !nested {
			leaves[first] = h
			continue
		}
		if dirs[first] == nil {
			dirs[first] = map[string]plumbing.Hash{}
		}
		dirs[first][rest] = h
	}
	changed := false
	for name, h := range leaves {
		if h.IsZero() {
			if _, ok := byName[name]; ok {
				delete(byName, name)
				changed = true
			}
			continue
		}
		if old, ok := byName[name]; ok && old.Hash == h && old.Mode == filemode.Regular {
			continue
		}
		byName[name] = object.TreeEntry{Name: name, Mode: filemode.Regular, Hash: h}
		changed = true
	}
	for name, sub := range dirs {
		var subBase plumbing.Hash
		if old, ok := byName[name]; ok && old.Mode == filemode.Dir {
			subBase = old.Hash
		}
		nh, err := editTree(s, subBase, sub)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		old, had := byName[name]
		switch {
		case nh.IsZero() && had:
			delete(byName, name)
			changed = true
		case nh.IsZero():
		case !had || old.Hash != nh || old.Mode != filemode.Dir:
			byName[name] = object.TreeEntry{Name: name, Mode: filemode.Dir, Hash: nh}
			changed = true
		}
	}
	if !changed {
		return base, nil
	}
	if len(byName) == 0 {
		return plumbing.ZeroHash, nil
	}
	return writeTree(s, byName)
}

func writeTree(s storer.EncodedObjectStorer, byName map[string]object.TreeEntry) (plumbing.Hash, error) {
	t := &object.Tree{Entries: make([]object.TreeEntry, 0, len(byName))}
	for _, e := range byName {
		t.Entries = append(t.Entries, e)
	}
	// git orders entries by name, directories as if their name ended in '/'.
	sortKey := func(e object.TreeEntry) string {
		if e.Mode == filemode.Dir {
			return e.Name + "/"
		}
		return e.Name
	}
	sort.Slice(t.Entries, func(i, j int) bool { return sortKey(t.Entries[i]) < sortKey(t.Entries[j]) })
	obj := s.NewEncodedObject()
	if err := t.Encode(obj); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("git: encode tree: %w", err)
	}
	return s.SetEncodedObject(obj)
}

// emptyTree stores and returns the empty tree (a commit needs a tree).
func emptyTree(s storer.EncodedObjectStorer) (plumbing.Hash, error) {
	obj := s.NewEncodedObject()
	if err := (&object.Tree{}).Encode(obj); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("git: encode tree: %w", err)
	}
	return s.SetEncodedObject(obj)
}
