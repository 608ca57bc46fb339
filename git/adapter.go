package git

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/osfs"
	gogit "github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	"github.com/go-git/go-git/v5/plumbing/transport/server"
	"github.com/go-git/go-git/v5/storage/filesystem"

	"github.com/remora-p2p/remora/sdk"
)

// Version is the adapter's version.
const Version = "0.1.0"

func init() {
	// go-git's stock file:// transport runs the git binary's upload-pack and
	// receive-pack. Serve file:// with go-git's in-process server instead, so
	// the adapter never shells out to git (installed once, at import, before
	// any goroutine can use the registry).
	client.InstallProtocol("file", server.NewClient(fileLoader{osfs.New("")}))
}

// fileLoader is go-git's filesystem loader with the local clone's storage
// options (the in-process server runs in the adapter's process, and the
// stock loader loads a planted blob of any size whole, and keeps it in a
// 96 MiB object cache, to pack it) and atomic ref writes (atomicRefs).
type fileLoader struct{ base billy.Filesystem }

func (l fileLoader) Load(ep *transport.Endpoint) (storer.Storer, error) {
	fs, err := l.base.Chroot(ep.Path)
	if err != nil {
		return nil, err
	}
	if _, err := fs.Stat("config"); err != nil { // not bare
		if fs, err = fs.Chroot(".git"); err != nil {
			return nil, err
		}
		if _, err := fs.Stat("config"); err != nil {
			return nil, transport.ErrRepositoryNotFound
		}
	}
	st := filesystem.NewStorageWithOptions(fs, cache.NewObjectLRU(cache.MiByte), filesystem.Options{LargeObjectThreshold: largeObject})
	return atomicRefs{Storage: st, fs: fs}, nil
}

type adapter struct{}

// New returns the git adapter.
func New() sdk.Adapter { return adapter{} }

func (adapter) Info() sdk.Info {
	cfg, _ := parseConfig([]byte(`{"remote":"file:///x"}`))
	return sdk.Info{
		Name:     "git",
		Version:  Version,
		Summary:  "a shared git repository (any forge over https or ssh, git daemon, file://)",
		Defaults: capabilities(cfg),
	}
}

func capabilities(cfg Config) sdk.Capabilities {
	idem := sdk.Idempotency{Level: sdk.IdempotencyStrong}
	if r := cfg.Retention.D(); r > 0 {
		// a key is remembered while its file is retained
		idem = sdk.Idempotency{Level: sdk.IdempotencyWindow, Window: sdk.Duration(r)}
	}
	return sdk.Capabilities{
		MaxPayload:   cfg.MaxPayload,
		Counting:     sdk.CountBytes,
		Board:        true,
		PollInterval: cfg.PollMin,
		Latency:      sdk.Duration(cfg.PollMin.D()/2 + cfg.FlushInterval.D()),
		Retention:    *cfg.Retention,
		Delete:       sdk.DeleteOwn,
		Idempotency:  idem,
	}
}

// Configure validates the configuration, opens the local clone in the state
// dir and checks the remote. An unreachable remote is not an error (the
// channel works offline and retries); rejected credentials, a wrong host
// key and a missing repository are.
func (adapter) Configure(ctx context.Context, req sdk.ConfigureRequest) (sdk.Channel, error) {
	cfg, err := parseConfig(req.Config)
	if err != nil {
		return nil, err
	}
	if req.StateDir == "" {
		return nil, sdk.Errorf(sdk.CodeBadConfig, "git: no state dir: the host must give one")
	}
	if err := os.MkdirAll(req.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("git: state dir: %w", err)
	}
	member, err := memberID(cfg.Member, req.StateDir)
	if err != nil {
		return nil, err
	}
	ep, err := transport.NewEndpoint(cfg.Remote)
	if err != nil {
		return nil, badConfig("remote", "%v", err)
	}
	auth, err := authFor(cfg, ep, req.Secrets)
	if err != nil {
		return nil, err
	}
	repo, err := openClone(filepath.Join(req.StateDir, "clone.git"), cfg.MaxFetchBytes)
	if err != nil {
		return nil, err
	}
	remote, err := repo.CreateRemoteAnonymous(&gitconfig.RemoteConfig{Name: remoteName, URLs: []string{cfg.Remote}})
	if err != nil {
		return nil, fmt.Errorf("git: remote: %w", err)
	}
	logger := req.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := newChannel(cfg, member, logger, repo, remote, auth)
	if err := c.check(ctx); err != nil {
		if sdk.CodeOf(err) != sdk.CodeUnavailable {
			c.Close()
			return nil, err
		}
		logger.Warn("git: remote unreachable; publishing will retry", "err", err)
	}
	return c, nil
}

// largeObject is the size above which an object of the local clone is
// read from its pack as it is used rather than loaded whole: a blob far
// above any max_payload is then only its size, checked before anything
// is read.
const largeObject = 1 << 20

func openClone(path string, maxFetch int64) (*gogit.Repository, error) {
	fail := func(err error) (*gogit.Repository, error) {
		return nil, fmt.Errorf("git: local clone %s: %w (delete it to start over)", path, err)
	}
	if _, err := os.Stat(filepath.Join(path, "config")); errors.Is(err, os.ErrNotExist) {
		if _, err := gogit.PlainInit(path, true); err != nil {
			return fail(err)
		}
	}
	st := filesystem.NewStorageWithOptions(osfs.New(path), cache.NewObjectLRUDefault(), filesystem.Options{LargeObjectThreshold: largeObject})
	repo, err := gogit.Open(&limitedStorage{Storage: st, max: maxFetch}, nil)
	if err != nil {
		return fail(err)
	}
	return repo, nil
}

// jitter returns d ± 20%.
func jitter(d time.Duration) time.Duration {
	return d - d/5 + time.Duration(randInt64(int64(2*d/5)+1))
}
