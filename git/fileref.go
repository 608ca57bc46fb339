package git

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/storage"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"github.com/go-git/go-git/v5/storage/filesystem/dotgit"
)

// atomicRefs is a file:// remote's storage whose ref writes are atomic for
// readers, as git's own are (write a new file, rename it over the ref).
// go-git's ref write truncates the ref file, then writes it, under a lock
// no reader takes: every file:// push and fetch loads its own storage
// (fileLoader), and one that listed the refs while another push was
// updating one read an empty file and failed ("ref file is empty"). A
// crash between truncate and write would have left the ref empty for good.
type atomicRefs struct {
	*filesystem.Storage
	fs billy.Filesystem
}

// refWrites orders the ref writes of this process's file:// sessions, so a
// compare-and-set compares with the latest value. go-git's receive-pack
// only sets refs (it does not compare); writers in other processes are
// ordered by the rename alone.
var refWrites sync.Mutex

func (s atomicRefs) SetReference(r *plumbing.Reference) error {
	return s.CheckAndSetReference(r, nil)
}

func (s atomicRefs) CheckAndSetReference(r, old *plumbing.Reference) error {
	var content string
	switch r.Type() {
	case plumbing.SymbolicReference:
		content = "ref: " + string(r.Target()) + "\n"
	case plumbing.HashReference:
		content = r.Hash().String() + "\n"
	default:
		return fmt.Errorf("git: set ref %s: invalid reference type", r.Name())
	}
	refWrites.Lock()
	defer refWrites.Unlock()
	// Reading the ref also checks its name (go-git refuses names that
	// would leave refs/ once made a path).
	cur, err := s.Storage.Reference(r.Name())
	switch {
	case errors.Is(err, dotgit.ErrReferenceNameEscape):
		return err
	case old == nil:
	case err != nil:
		return err
	case cur.Hash() != old.Hash():
		return storage.ErrReferenceHasChanged
	}
	return s.replace(r.Name().String(), content)
}

// replace writes content to a new file beside refs/ (a file inside refs/
// would be listed as a ref meanwhile) and renames it over name.
func (s atomicRefs) replace(name, content string) (err error) {
	b := make([]byte, 8)
	rand.Read(b)
	tmp := "remora-ref-" + hex.EncodeToString(b) + ".tmp"
	f, err := s.fs.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
	if err != nil {
		return fmt.Errorf("git: set ref %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			s.fs.Remove(tmp)
		}
	}()
	_, err = f.Write([]byte(content))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("git: set ref %s: %w", name, err)
	}
	if err := s.fs.Rename(tmp, name); err != nil {
		return fmt.Errorf("git: set ref %s: %w", name, err)
	}
	return nil
}

// A file:// session's storage lists the repository's packs once, at its
// first object read. A push by another session that wrote its pack after
// that, and its ref before this session read the refs, left an object this
// session could name but not find ("object not found": a fetch failed, 1 in
// 10 runs of TestFileConcurrentPublishers). A miss lists the packs again.

func (s atomicRefs) EncodedObject(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	return relisted(s, func() (plumbing.EncodedObject, error) { return s.Storage.EncodedObject(t, h) })
}

func (s atomicRefs) DeltaObject(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	return relisted(s, func() (plumbing.EncodedObject, error) { return s.Storage.DeltaObject(t, h) })
}

func (s atomicRefs) EncodedObjectSize(h plumbing.Hash) (int64, error) {
	return relisted(s, func() (int64, error) { return s.Storage.EncodedObjectSize(h) })
}

func (s atomicRefs) HasEncodedObject(h plumbing.Hash) error {
	_, err := relisted(s, func() (struct{}, error) { return struct{}{}, s.Storage.HasEncodedObject(h) })
	return err
}

// relisted runs read, and once more after listing the packs again if it
// missed the object.
func relisted[T any](s atomicRefs, read func() (T, error)) (T, error) {
	v, err := read()
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		s.Storage.Reindex()
		v, err = read()
	}
	return v, err
}
