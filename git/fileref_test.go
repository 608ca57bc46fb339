package git

import (
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage"
	"github.com/go-git/go-git/v5/storage/memory"
)

// TestFileRefWritesAtomic: the file:// server's ref updates are atomic for
// readers. Each push and fetch over file:// loads its own storage
// (fileLoader); go-git's own SetRef truncates the ref file and then writes
// it, so a concurrent reader (another publisher's push advertising the
// refs, a subscriber's fetch) read an empty file and failed with "ref file
// is empty" (TestConformance/file/Concurrent in CI).
func TestFileRefWritesAtomic(t *testing.T) {
	ep, load := newFileRepo(t)
	writer, err := load.Load(ep)
	if err != nil {
		t.Fatal(err)
	}
	name := plumbing.ReferenceName(DefaultNamespace + "m0")
	hashes := []plumbing.Hash{plumbing.NewHash("1111111111111111111111111111111111111111"), plumbing.NewHash("2222222222222222222222222222222222222222")}
	if err := writer.SetReference(plumbing.NewHashReference(name, hashes[0])); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	// writers: plain sets (what receive-pack does) and compare-and-set
	for w := range 2 {
		wg.Go(func() {
			st, err := load.Load(ep)
			if err != nil {
				errs <- err
				return
			}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ref := plumbing.NewHashReference(name, hashes[i%2])
				if w == 0 {
					err = st.SetReference(ref)
				} else {
					cur, rerr := st.Reference(name)
					if rerr != nil {
						errs <- rerr
						return
					}
					err = st.CheckAndSetReference(ref, cur)
					if errors.Is(err, storage.ErrReferenceHasChanged) {
						err = nil // the other writer won: a lost race, not a failure
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	// readers: each with its own storage, as each file:// session has
	for range 2 {
		wg.Go(func() {
			st, err := load.Load(ep)
			if err != nil {
				errs <- err
				return
			}
			for {
				select {
				case <-stop:
					return
				default:
				}
				iter, err := st.IterReferences()
				if err == nil {
					err = iter.ForEach(func(*plumbing.Reference) error { return nil })
				}
				if err == nil {
					var ref *plumbing.Reference
					if ref, err = st.Reference(name); err == nil && ref.Hash() != hashes[0] && ref.Hash() != hashes[1] {
						t.Errorf("read %s, a value never written", ref.Hash())
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	select {
	case err := <-errs:
		t.Errorf("concurrent ref write and read: %v", err)
	case <-time.After(2 * time.Second):
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent ref write and read: %v", err)
	}
}

// TestFileLoaderSeesNewPacks: a file:// session (fileLoader's storage)
// finds an object of a pack another session wrote after its first object
// read. go-git lists the packs once; a fetch that read the refs after a
// concurrent push updated one asked for that push's commit and failed with
// "object not found" (TestFileConcurrentPublishers in CI).
func TestFileLoaderSeesNewPacks(t *testing.T) {
	ep, load := newFileRepo(t)
	reader, err := load.Load(ep)
	if err != nil {
		t.Fatal(err)
	}
	absent := plumbing.NewHash("1111111111111111111111111111111111111111")
	if _, err := reader.EncodedObject(plumbing.AnyObject, absent); !errors.Is(err, plumbing.ErrObjectNotFound) {
		t.Fatalf("an absent object: %v, want not found", err)
	}

	// another session writes a pack holding one blob, as receive-pack does
	mem := memory.NewStorage()
	blob := mem.NewEncodedObject()
	blob.SetType(plumbing.BlobObject)
	w, _ := blob.Writer()
	w.Write([]byte("an item pushed meanwhile"))
	w.Close()
	h, err := mem.SetEncodedObject(blob)
	if err != nil {
		t.Fatal(err)
	}
	writer, err := load.Load(ep)
	if err != nil {
		t.Fatal(err)
	}
	pw, err := writer.(storer.PackfileWriter).PackfileWriter()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := packfile.NewEncoder(pw, mem, false).Encode([]plumbing.Hash{h}, 10); err != nil {
		t.Fatal(err)
	}
	if err := pw.Close(); err != nil {
		t.Fatal(err)
	}

	if _, err := reader.EncodedObject(plumbing.AnyObject, h); err != nil {
		t.Errorf("the first session reading the new pack's object: %v", err)
	}
	if err := reader.(storer.EncodedObjectStorer).HasEncodedObject(h); err != nil {
		t.Errorf("HasEncodedObject: %v", err)
	}
	if n, err := reader.(storer.EncodedObjectStorer).EncodedObjectSize(h); err != nil || n != int64(len("an item pushed meanwhile")) {
		t.Errorf("EncodedObjectSize: %d, %v", n, err)
	}
}

// newFileRepo makes an empty bare repository and returns its file://
// endpoint and the loader the in-process server uses.
func newFileRepo(t *testing.T) (*transport.Endpoint, fileLoader) {
	t.Helper()
	bare := filepath.Join(t.TempDir(), "circle.git")
	if _, err := gogit.PlainInit(bare, true); err != nil {
		t.Fatal(err)
	}
	ep, err := transport.NewEndpoint("file://" + bare)
	if err != nil {
		t.Fatal(err)
	}
	return ep, fileLoader{osfs.New("")}
}
