package plugins

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/remora-p2p/remora/sdk"
)

// ErrUnknownAdapter is returned for an adapter name that is neither built
// in nor installed.
var ErrUnknownAdapter = errors.New("plugins: unknown adapter")

// Builtin returns the command that runs the built-in adapter name: this
// executable with the arguments `adapter NAME` (cmd/remora serves it with
// sdk.Serve). If the executable cannot be found, starting the command fails
// with that error.
func Builtin(name string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		return &exec.Cmd{Err: fmt.Errorf("plugins: built-in adapter %s: find own executable: %w", name, err)}
	}
	return exec.Command(exe, "adapter", name)
}

// validName is what an adapter may be called.
var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Installed is one third-party adapter in the plugins directory.
type Installed struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// File is the executable's name inside the plugins directory.
	File string `json:"file"`
	// SHA256 is the hex SHA-256 the executable had when it was installed.
	SHA256      string    `json:"sha256"`
	InstalledAt time.Time `json:"installed_at"`
}

// fileName is the installed executable's name for adapter name.
func fileName(name string) string { return "remora-adapter-" + name }

// manifest is the plugins directory's manifest.json.
type manifest struct {
	Adapters map[string]Installed `json:"adapters"`
}

const manifestFile = "manifest.json"

func readManifest(dir string) (manifest, error) {
	m := manifest{Adapters: map[string]Installed{}}
	if dir == "" {
		return m, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, manifestFile))
	if errors.Is(err, os.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return m, fmt.Errorf("plugins: read manifest: %w", err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("plugins: manifest %s is corrupt (%v); reinstall the adapters", filepath.Join(dir, manifestFile), err)
	}
	if m.Adapters == nil {
		m.Adapters = map[string]Installed{}
	}
	return m, nil
}

func writeManifest(dir string, m manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("plugins: write manifest: %w", err)
	}
	return writeFileAtomic(filepath.Join(dir, manifestFile), append(b, '\n'), 0o600)
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("plugins: write %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), perm)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("plugins: write %s: %w", path, err)
	}
	return nil
}

// describeTimeout bounds `ADAPTER describe` during Install.
const describeTimeout = 10 * time.Second

// Install copies the adapter executable at path into the plugins
// directory (mode 0755), asks it to describe itself, and pins its SHA-256
// in the manifest. Installing an adapter of the same name again replaces
// it. A built-in adapter's name cannot be taken.
func (s *Supervisor) Install(ctx context.Context, path string) (Installed, error) {
	fail := func(err error) (Installed, error) {
		return Installed{}, fmt.Errorf("plugins: install %s: %w", path, err)
	}
	if s.opts.Dir == "" {
		return fail(errors.New("no plugins directory configured"))
	}
	if err := os.MkdirAll(s.opts.Dir, 0o700); err != nil {
		return fail(err)
	}
	src, err := os.Open(path)
	if err != nil {
		return fail(err)
	}
	defer src.Close()
	if fi, err := src.Stat(); err != nil {
		return fail(err)
	} else if !fi.Mode().IsRegular() {
		return fail(errors.New("not a regular file"))
	}
	tmp, err := os.CreateTemp(s.opts.Dir, ".install-*")
	if err != nil {
		return fail(err)
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(tmp, h), src)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o755)
	}
	if err != nil {
		return fail(err)
	}
	sum := hex.EncodeToString(h.Sum(nil))

	d, err := describe(ctx, tmp.Name())
	if err != nil {
		return fail(err)
	}
	if !validName.MatchString(d.Name) {
		return fail(fmt.Errorf("adapter calls itself %q; a name is lowercase letters, digits and '-'", d.Name))
	}
	if slices.Contains(s.opts.Builtins, d.Name) {
		return fail(fmt.Errorf("adapter %q has the name of a built-in adapter", d.Name))
	}
	if d.ProtocolVersion != sdk.ProtocolVersion {
		return fail(fmt.Errorf("adapter %s speaks adapter protocol %d, this remora speaks %d; install a matching version",
			d.Name, d.ProtocolVersion, sdk.ProtocolVersion))
	}
	// Check the copy is still what was hashed, then move it in place.
	if got, err := fileSHA256(tmp.Name()); err != nil || got != sum {
		return fail(fmt.Errorf("the copy changed while installing (%v)", err))
	}
	inst := Installed{Name: d.Name, Version: d.Version, File: fileName(d.Name), SHA256: sum, InstalledAt: time.Now().UTC()}

	s.installMu.Lock()
	defer s.installMu.Unlock()
	m, err := readManifest(s.opts.Dir)
	if err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(s.opts.Dir, inst.File)); err != nil {
		return fail(err)
	}
	m.Adapters[inst.Name] = inst
	if err := writeManifest(s.opts.Dir, m); err != nil {
		return fail(err)
	}
	s.logger.Info("adapter installed", "adapter", inst.Name, "version", inst.Version, "sha256", inst.SHA256)
	return inst, nil
}

type description struct {
	ProtocolVersion int `json:"protocol_version"`
	sdk.Info
}

// describe runs `path describe` with an empty environment and parses its
// JSON.
func describe(ctx context.Context, path string) (description, error) {
	ctx, cancel := context.WithTimeout(ctx, describeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "describe")
	cmd.Env = []string{}
	var out, stderr bytes.Buffer
	cmd.Stdout = &limitWriter{w: &out, n: 1 << 20}
	cmd.Stderr = &limitWriter{w: &stderr, n: 4 << 10}
	if err := cmd.Run(); err != nil {
		return description{}, fmt.Errorf("`%s describe` failed: %w; is it a remora adapter? %s",
			filepath.Base(path), err, strings.TrimSpace(stderr.String()))
	}
	var d description
	if err := json.Unmarshal(out.Bytes(), &d); err != nil || d.Name == "" {
		return description{}, fmt.Errorf("`%s describe` printed no adapter description (%v); is it a remora adapter?", filepath.Base(path), err)
	}
	return d, nil
}

type limitWriter struct {
	w io.Writer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) > l.n {
		p = p[:l.n]
	}
	l.n -= len(p)
	_, err := l.w.Write(p)
	return n, err
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Installed lists the third-party adapters in the plugins directory.
func (s *Supervisor) Installed() ([]Installed, error) {
	m, err := readManifest(s.opts.Dir)
	if err != nil {
		return nil, err
	}
	out := make([]Installed, 0, len(m.Adapters))
	for _, in := range m.Adapters {
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Adapters lists every adapter name that Open accepts: built-in and
// installed, sorted.
func (s *Supervisor) Adapters() []string {
	names := slices.Clone(s.opts.Builtins)
	if m, err := readManifest(s.opts.Dir); err == nil {
		for n := range m.Adapters {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return slices.Compact(names)
}

// spec is how to start one adapter kind.
type spec struct {
	command  func() *exec.Cmd
	checksum []byte
	where    string // for errors: "built in", or the installed path
}

// resolve finds how to start adapter name, or the process of the
// built-ins that run together (JoinKinds(Options.Together)).
func (s *Supervisor) resolve(name string) (spec, error) {
	if slices.Contains(s.opts.Builtins, name) || len(s.opts.Together) > 0 && name == JoinKinds(s.opts.Together) {
		return spec{command: func() *exec.Cmd { return s.opts.Command(name) }, where: "built in"}, nil
	}
	m, err := readManifest(s.opts.Dir)
	if err != nil {
		return spec{}, err
	}
	in, ok := m.Adapters[name]
	if !ok {
		avail := strings.Join(s.Adapters(), ", ")
		if avail == "" {
			avail = "none"
		}
		return spec{}, fmt.Errorf("%w %q (available: %s; install others with `remora adapter install PATH`)", ErrUnknownAdapter, name, avail)
	}
	sum, err := hex.DecodeString(in.SHA256)
	if err != nil || len(sum) != sha256.Size || in.Name != name || in.File != fileName(name) {
		return spec{}, fmt.Errorf("plugins: manifest entry for %q is corrupt; reinstall it with `remora adapter install`", name)
	}
	path := filepath.Join(s.opts.Dir, in.File)
	return spec{command: func() *exec.Cmd { return exec.Command(path) }, checksum: sum, where: path}, nil
}
