package git

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/remora-p2p/remora/sdk"
)

// Secret names (ConfigureRequest.Secrets).
const (
	SecretSSHKey           = "ssh_key"            // PEM private key for ssh remotes
	SecretSSHKeyPassphrase = "ssh_key_passphrase" // its passphrase, if any
	SecretToken            = "token"              // https access token (sent as the basic-auth password)
	SecretUsername         = "username"           // https basic-auth user name
	SecretPassword         = "password"           // https basic-auth password
)

// authFor builds the transport auth for cfg's remote from cfg and secrets.
// file:// and git:// need none.
func authFor(cfg Config, ep *transport.Endpoint, secrets map[string]string) (transport.AuthMethod, error) {
	switch ep.Protocol {
	case "ssh":
		return sshAuth(cfg, ep, secrets)
	case "https", "http":
		pass := secrets[SecretToken]
		if pass == "" {
			pass = secrets[SecretPassword]
		}
		if pass == "" {
			return nil, nil // a public repository can still be read
		}
		user := secrets[SecretUsername]
		if user == "" {
			user = cfg.Username
		}
		if user == "" {
			user = "git"
		}
		return &githttp.BasicAuth{Username: user, Password: pass}, nil
	}
	return nil, nil
}

func sshAuth(cfg Config, ep *transport.Endpoint, secrets map[string]string) (transport.AuthMethod, error) {
	user := ep.User
	if user == "" {
		user = "git"
	}
	khFile := cfg.KnownHostsFile
	if khFile == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, badConfig("known_hosts_file", "not set and no home directory: set it to a known_hosts file holding the server's host key")
		}
		khFile = filepath.Join(home, ".ssh", "known_hosts")
	}
	if _, err := os.Stat(khFile); err != nil {
		return nil, badConfig("known_hosts_file", "%s: %v; add the server's host key with `ssh-keyscan -p %d %s >> %s` after checking it", khFile, err, port(ep), ep.Host, khFile)
	}
	db, err := gitssh.NewKnownHostsDb(khFile)
	if err != nil {
		return nil, badConfig("known_hosts_file", "%s cannot be parsed: %v", khFile, err)
	}
	hostPort := net.JoinHostPort(ep.Host, fmt.Sprint(port(ep)))
	helper := gitssh.HostKeyCallbackHelper{
		HostKeyCallback:   hostKeyCallback(db.HostKeyCallback(), khFile),
		HostKeyAlgorithms: db.HostKeyAlgorithms(hostPort),
	}
	pass := secrets[SecretSSHKeyPassphrase]
	switch {
	case cfg.SSHKeyFile != "":
		k, err := gitssh.NewPublicKeysFromFile(user, cfg.SSHKeyFile, pass)
		if err != nil {
			return nil, badConfig("ssh_key_file", "%s: %v", cfg.SSHKeyFile, err)
		}
		k.HostKeyCallbackHelper = helper
		return k, nil
	case secrets[SecretSSHKey] != "":
		k, err := gitssh.NewPublicKeys(user, []byte(secrets[SecretSSHKey]), pass)
		if err != nil {
			// never echo the secret itself
			return nil, sdk.Errorf(sdk.CodeBadConfig, "git: secret %q is not a usable private key (PEM/OpenSSH format; passphrase in %q): %v", SecretSSHKey, SecretSSHKeyPassphrase, errors.Unwrap(err))
		}
		k.HostKeyCallbackHelper = helper
		return k, nil
	default:
		if os.Getenv("SSH_AUTH_SOCK") == "" {
			return nil, badConfig("ssh_key_file", "no ssh key: set ssh_key_file, the secret %q, or run ssh-agent (SSH_AUTH_SOCK)", SecretSSHKey)
		}
		k, err := gitssh.NewSSHAgentAuth(user)
		if err != nil {
			return nil, sdk.Errorf(sdk.CodeBadConfig, "git: ssh-agent: %v; set ssh_key_file instead", err)
		}
		k.HostKeyCallbackHelper = helper
		return k, nil
	}
}

func port(ep *transport.Endpoint) int {
	if ep.Port != 0 {
		return ep.Port
	}
	return 22
}

// hostKeyError is a rejected ssh host key, with what the user should do.
type hostKeyError struct {
	host     string
	file     string
	mismatch bool
	err      error
}

func (e *hostKeyError) Error() string { return e.err.Error() }
func (e *hostKeyError) Unwrap() error { return e.err }

func hostKeyCallback(cb ssh.HostKeyCallback, file string) ssh.HostKeyCallback {
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := cb(hostname, remote, key)
		if err == nil {
			return nil
		}
		var ke *knownhosts.KeyError
		return &hostKeyError{host: hostname, file: file, mismatch: errors.As(err, &ke) && len(ke.Want) > 0, err: err}
	}
}

// classify maps a go-git error of operation op to an sdk error a user can
// act on. Context errors pass through unchanged.
func classify(op, remote string, err error) error {
	if err == nil {
		return nil
	}
	var se *sdk.Error
	if errors.As(err, &se) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return sdk.Errorf(sdk.CodeUnavailable, "git: %s: %s did not answer in time: %w", op, remote, err)
	}
	var hk *hostKeyError
	if errors.As(err, &hk) {
		if hk.mismatch {
			return sdk.Errorf(sdk.CodeAuthFailed, "git: %s: the ssh host key of %s does NOT match %s: the server changed its key or someone intercepts the connection; verify the new key out of band before replacing the line in %s: %w", op, hk.host, hk.file, hk.file, err)
		}
		host, port, perr := net.SplitHostPort(hk.host)
		if perr != nil {
			host, port = hk.host, "22"
		}
		return sdk.Errorf(sdk.CodeBadConfig, "git: %s: ssh host %s is not in %s (known_hosts_file); check its key fingerprint with the server's admin, then add it: `ssh-keyscan -p %s %s >> %s`: %w", op, hk.host, hk.file, port, host, hk.file, err)
	}
	msg := err.Error()
	switch {
	case errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed),
		strings.Contains(msg, "unable to authenticate"):
		return sdk.Errorf(sdk.CodeAuthFailed, "git: %s: %s rejected the credentials; check the secret %q (https) or the ssh key and that it has write access: %w", op, remote, SecretToken, err)
	case errors.Is(err, transport.ErrRepositoryNotFound):
		return sdk.Errorf(sdk.CodeNotFound, "git: %s: repository %s not found (or no access); check the remote URL and that the repository exists: %w", op, remote, err)
	case strings.Contains(msg, "command error on"), strings.Contains(msg, "pre-receive hook"):
		return sdk.Errorf(sdk.CodeNeedsUserAction, "git: %s: %s refused the update (branch protection or a hook?); allow pushes to the channel's namespace: %w", op, remote, err)
	}
	return sdk.Errorf(sdk.CodeUnavailable, "git: %s: %s unreachable or failing; will retry: %w", op, remote, err)
}
