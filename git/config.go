package git

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"

	"github.com/remora-p2p/remora/sdk"
)

// Config is a git channel's configuration (ConfigureRequest.Config). Every
// field but Remote has a default; docs/channel-git.md has the table.
type Config struct {
	// Remote is the repository: file:///abs/path.git, git://host/repo.git,
	// ssh://user@host[:port]/path.git, user@host:path.git or https://host/path.git.
	Remote string `json:"remote"`
	// Namespace is the ref prefix the channel reads and writes; nothing
	// outside it is touched. Default "refs/heads/remora/".
	Namespace string `json:"namespace,omitempty"`
	// Member is this instance's own ref name below Namespace: an opaque name
	// of [A-Za-z0-9_-]{1,64}. Default: a random ID persisted in the state dir.
	Member string `json:"member,omitempty"`
	// FlushInterval is the coalescing window: at most one commit per interval.
	FlushInterval sdk.Duration `json:"flush_interval,omitempty"`
	// PollMin and PollMax bound the fetch interval; it backs off from PollMin
	// towards PollMax while nothing arrives, and returns to PollMin on activity.
	PollMin sdk.Duration `json:"poll_min,omitempty"`
	PollMax sdk.Duration `json:"poll_max,omitempty"`
	// Retention is how long log files are kept (and delivered); 0 keeps them
	// forever. Default 14 days.
	Retention *sdk.Duration `json:"retention,omitempty"`
	// MaxPayload is the largest item in bytes. Default 65536.
	MaxPayload int `json:"max_payload,omitempty"`
	// MaxFetchBytes bounds one fetched pack (default 64 MiB): a member ref
	// whose new commits bring more is left out until it changes, and
	// Health names it.
	MaxFetchBytes int64 `json:"max_fetch_bytes,omitempty"`
	// Timeout bounds each exchange with the remote (listing, fetch, push;
	// default 2m): a server that stalls or trickles longer is unavailable
	// for that round, and the next poll tries again.
	Timeout sdk.Duration `json:"timeout,omitempty"`
	// SSHKeyFile is a private key file for ssh remotes (else the secret
	// "ssh_key", else ssh-agent).
	SSHKeyFile string `json:"ssh_key_file,omitempty"`
	// KnownHostsFile pins ssh host keys. Default ~/.ssh/known_hosts.
	KnownHostsFile string `json:"known_hosts_file,omitempty"`
	// Username for https basic auth (default "git"; forges accept any
	// name with a token).
	Username string `json:"username,omitempty"`
}

// Defaults.
const (
	DefaultNamespace     = "refs/heads/sync/"
	DefaultFlushInterval = time.Second
	DefaultPollMin       = 10 * time.Second
	DefaultPollMax       = 2 * time.Minute
	DefaultRetention     = 14 * 24 * time.Hour
	DefaultMaxPayload    = 64 << 10
	DefaultMaxFetchBytes = 64 << 20
	DefaultTimeout       = 2 * time.Minute
	// MaxMaxPayload caps max_payload: forges reject or throttle large blobs.
	MaxMaxPayload = 16 << 20
)

var memberRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// badConfig is a CodeBadConfig error naming the field.
func badConfig(field, format string, args ...any) error {
	return sdk.Errorf(sdk.CodeBadConfig, "git: config field %q: %s", field, fmt.Sprintf(format, args...))
}

// parseConfig decodes and validates raw, filling defaults. It does no I/O
// except reading the member ID file in stateDir (see memberID).
func parseConfig(raw json.RawMessage) (Config, error) {
	var c Config
	if len(bytes.TrimSpace(raw)) == 0 {
		return c, badConfig("remote", "missing: the config needs at least {\"remote\": \"URL of the shared repository\"}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		var ute *json.UnmarshalTypeError
		switch {
		case errors.As(err, &ute):
			return c, badConfig(ute.Field, "wrong type: got JSON %s, want %s", ute.Value, ute.Type)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return c, badConfig(f, "unknown field; known fields are listed in docs/channel-git.md")
		}
		return c, sdk.Errorf(sdk.CodeBadConfig, "git: config is not valid JSON: %v", err)
	}
	if c.Remote == "" {
		return c, badConfig("remote", "missing: set it to the URL of the shared repository")
	}
	ep, err := transport.NewEndpoint(c.Remote)
	if err != nil {
		return c, badConfig("remote", "%q is not a git URL: %v", c.Remote, err)
	}
	switch ep.Protocol {
	case "file", "git", "ssh", "https":
	case "http":
		if !isLoopback(ep.Host) {
			return c, badConfig("remote", "plain http sends credentials and data in clear; use https://")
		}
	default:
		return c, badConfig("remote", "unsupported scheme %q: use file://, git://, ssh:// or https://", ep.Protocol)
	}
	if ep.Protocol == "file" && !filepath.IsAbs(ep.Path) {
		return c, badConfig("remote", "file remote %q needs an absolute path (file:///abs/path.git)", c.Remote)
	}
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	if !strings.HasPrefix(c.Namespace, "refs/") || !strings.HasSuffix(c.Namespace, "/") ||
		plumbing.ReferenceName(c.Namespace+"x").Validate() != nil {
		return c, badConfig("namespace", "%q must be a ref prefix like %q (starts with refs/, ends with /)", c.Namespace, DefaultNamespace)
	}
	if c.Member != "" && !memberRE.MatchString(c.Member) {
		return c, badConfig("member", "%q must be 1-64 characters of A-Z a-z 0-9 _ - (an opaque name, not a peer ID); leave it empty for a random one", c.Member)
	}
	durations := []struct {
		name string
		d    *sdk.Duration
		def  time.Duration
		min  time.Duration
	}{
		{"flush_interval", &c.FlushInterval, DefaultFlushInterval, 10 * time.Millisecond},
		{"poll_min", &c.PollMin, DefaultPollMin, 100 * time.Millisecond},
		{"poll_max", &c.PollMax, DefaultPollMax, 100 * time.Millisecond},
	}
	for _, d := range durations {
		if *d.d == 0 {
			*d.d = sdk.Duration(d.def)
		}
		if d.d.D() < d.min {
			return c, badConfig(d.name, "%s is below the minimum %s", d.d.D(), d.min)
		}
	}
	if c.PollMax < c.PollMin {
		return c, badConfig("poll_max", "%s is below poll_min %s", c.PollMax.D(), c.PollMin.D())
	}
	if c.Retention == nil {
		r := sdk.Duration(DefaultRetention)
		c.Retention = &r
	}
	if r := c.Retention.D(); r != 0 && r < time.Hour {
		return c, badConfig("retention", "%s is below one hour (the log's bucket size); use 0 to keep forever", r)
	}
	if c.MaxPayload == 0 {
		c.MaxPayload = DefaultMaxPayload
	}
	if c.MaxPayload < 0 || c.MaxPayload > MaxMaxPayload {
		return c, badConfig("max_payload", "%d is out of range 1..%d bytes", c.MaxPayload, MaxMaxPayload)
	}
	if c.Timeout == 0 {
		c.Timeout = sdk.Duration(DefaultTimeout)
	}
	if c.Timeout < 0 {
		return c, badConfig("timeout", "%s is negative", c.Timeout.D())
	}
	if c.MaxFetchBytes == 0 {
		c.MaxFetchBytes = DefaultMaxFetchBytes
	}
	if c.MaxFetchBytes < 4*int64(c.MaxPayload) {
		return c, badConfig("max_fetch_bytes", "%d is below four items of max_payload (%d bytes)", c.MaxFetchBytes, 4*c.MaxPayload)
	}
	if c.SSHKeyFile != "" && ep.Protocol != "ssh" {
		return c, badConfig("ssh_key_file", "set, but remote %q is not an ssh remote", c.Remote)
	}
	return c, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// memberID returns the configured member name or the one persisted in
// stateDir, creating a random one on first use. It is never derived from
// the peer ID, so the repo does not link refs to peers.
func memberID(configured, stateDir string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	path := filepath.Join(stateDir, "member")
	b, err := os.ReadFile(path)
	if err == nil {
		id := strings.TrimSpace(string(b))
		if !memberRE.MatchString(id) {
			return "", sdk.Errorf(sdk.CodeBadConfig, "git: state file %s is corrupt (%q); delete it to get a new member name", path, id)
		}
		return id, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("git: read member ID: %w", err)
	}
	var raw [12]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("git: member ID: %w", err)
	}
	id := hex.EncodeToString(raw[:])
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("git: write member ID: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("git: write member ID: %w", err)
	}
	return id, nil
}
