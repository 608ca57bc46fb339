package git

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"sort"
	"strings"

	gogit "github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// A remote is hostile ground: any member with push access (or the forge)
// can put a blob of gigabytes on a member ref. go-git reads every object
// of a fetched pack whole while indexing it, so the clone's storage refuses
// a pack larger than max_fetch_bytes; a fetch that meets one fetches the
// member refs one by one and leaves out the refs whose pack is too large,
// remembering their tips so that later polls do not download them again.

// errPackTooLarge is a fetched pack over max_fetch_bytes.
var errPackTooLarge = errors.New("the remote sent a pack larger than max_fetch_bytes")

// limitedStorage is the clone's storage; fetched packs are limited.
type limitedStorage struct {
	*filesystem.Storage
	max int64
}

func (s *limitedStorage) PackfileWriter() (io.WriteCloser, error) {
	w, err := s.Storage.PackfileWriter()
	if err != nil {
		return nil, err
	}
	return &limitedWriter{w: w, left: s.max}, nil
}

type limitedWriter struct {
	w    io.WriteCloser
	left int64
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		return 0, errPackTooLarge
	}
	l.left -= int64(len(p))
	return l.w.Write(p)
}

func (l *limitedWriter) Close() error { return l.w.Close() }

// fetchRefs fetches the member refs except refused ones; with a pack too
// large it fetches them one by one and refuses those whose pack is. c.mu
// held.
func (c *channel) fetchRefs(ctx context.Context) error {
	all := gitconfig.RefSpec("+" + c.cfg.Namespace + "*:" + trackPrefix + "*")
	c.refusedMu.Lock()
	refused := maps.Clone(c.refused)
	c.refusedMu.Unlock()
	defer func() {
		c.refusedMu.Lock()
		c.refused = refused
		c.refusedMu.Unlock()
		c.health.setGauge("refused_refs", int64(len(refused)))
	}()
	if len(refused) == 0 {
		err := c.fetchSpecs(ctx, all)
		if !errors.Is(err, errPackTooLarge) {
			return err
		}
	}
	// Someone pushed something huge: find which ref, and leave it out.
	lctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout.D())
	adv, err := c.remote.ListContext(lctx, &gogit.ListOptions{Auth: c.auth})
	cancel()
	if err != nil {
		return err
	}
	keep := map[string]plumbing.Hash{}
	var members []string
	for _, r := range adv {
		m, ok := strings.CutPrefix(r.Name().String(), c.cfg.Namespace)
		if !ok || r.Type() != plumbing.HashReference || !memberRE.MatchString(m) {
			continue
		}
		keep[m] = r.Hash()
		members = append(members, m)
	}
	sort.Strings(members)
	for tip, m := range refused {
		if keep[m] != tip {
			delete(refused, tip) // the ref moved on or went away: try it again
		}
	}
	// keepOld keeps the tracking ref of a left-out member where it was.
	keepOld := func(m string) {
		if old, err := c.repo.Reference(plumbing.ReferenceName(trackPrefix+m), false); err == nil {
			keep[m] = old.Hash()
		} else {
			delete(keep, m)
		}
	}
	spec := func(m string) gitconfig.RefSpec {
		return gitconfig.RefSpec("+" + c.cfg.Namespace + m + ":" + trackPrefix + m)
	}
	var specs []gitconfig.RefSpec
	var fine []string
	for _, m := range members {
		if _, bad := refused[keep[m]]; bad {
			keepOld(m)
			continue
		}
		specs = append(specs, spec(m))
		fine = append(fine, m)
	}
	if len(specs) == 0 {
		return c.dropTracking(keep)
	}
	err = c.fetchSpecs(ctx, specs...)
	if !errors.Is(err, errPackTooLarge) {
		if err != nil {
			return err
		}
		return c.dropTracking(keep)
	}
	for _, m := range fine {
		err := c.fetchSpecs(ctx, spec(m))
		if errors.Is(err, errPackTooLarge) {
			refused[keep[m]] = m
			c.log.Warn("git: a member ref holds more than max_fetch_bytes; left out until it changes", "ref", c.cfg.Namespace+m, "tip", keep[m], "max_fetch_bytes", c.cfg.MaxFetchBytes)
			keepOld(m)
			continue
		}
		if err != nil {
			return err
		}
	}
	return c.dropTracking(keep)
}

// refusedSnapshot says which refs are left out, for Health ("" if
// none).
func (c *channel) refusedSnapshot() string {
	c.refusedMu.Lock()
	defer c.refusedMu.Unlock()
	if len(c.refused) == 0 {
		return ""
	}
	var refs []string
	for tip, m := range c.refused {
		refs = append(refs, fmt.Sprintf("%s%s at %s", c.cfg.Namespace, m, tip.String()[:12]))
	}
	sort.Strings(refs)
	return fmt.Sprintf("left out, their new commits bring more than max_fetch_bytes (%d): %s; remove the large file from that ref, or raise max_fetch_bytes if it is yours",
		c.cfg.MaxFetchBytes, strings.Join(refs, ", "))
}

func (c *channel) fetchSpecs(ctx context.Context, specs ...gitconfig.RefSpec) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout.D())
	defer cancel()
	err := c.remote.FetchContext(ctx, &gogit.FetchOptions{
		RemoteName: remoteName,
		RefSpecs:   specs,
		Auth:       c.auth,
		Tags:       gogit.NoTags,
		Prune:      len(specs) == 1 && specs[0].IsWildcard(),
		Force:      true,
	})
	if errors.Is(err, gogit.NoErrAlreadyUpToDate) {
		return nil
	}
	return err
}
