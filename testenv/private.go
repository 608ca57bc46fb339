package testenv

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// Private is a private instance of one testenv service (mail, matrix or
// git): its own ports and its own folder under /tmp, so that a test may
// stop and restart it (chaos) without disturbing the shared servers other
// tests use. It is started with the same svc-NAME.sh script as the shared
// one, so it is configured the same way.
type Private struct {
	// Service is mail, matrix or git.
	Service string
	// Dir is the instance's folder (the scripts' DIR).
	Dir string

	t   testing.TB
	env map[string]string
	// ports are the scripts' port settings: every call passes them, or
	// the script would fall back to the shared instance's ports.
	ports []string
}

// privateNeeds lists, per service, what must be installed already: a
// private instance never installs packages or builds Dendrite in the
// middle of a test.
var privateNeeds = map[string][]string{
	"mail":   {"dovecot", "postconf", "/usr/bin/mlmmj-receive"},
	"matrix": {"dendrite"},
	"git":    {"git"},
}

// StartPrivate starts a private instance of service on free loopback ports
// and stops it, removing its folder, when t ends. It skips t (fails it under
// REMORA_REQUIRE_SERVERS=1) when the service's programs are not installed.
func StartPrivate(t testing.TB, service string) *Private {
	t.Helper()
	needs, ok := privateNeeds[service]
	if !ok {
		t.Fatalf("testenv: no private instance of %q (mail, matrix or git)", service)
	}
	for _, b := range needs {
		if b == "dendrite" {
			b = dendriteBin()
		}
		if _, err := exec.LookPath(b); err != nil {
			Missing(t, service, "%s is not installed", b)
		}
	}
	if service == "mail" && os.Geteuid() != 0 {
		Missing(t, service, "a private mail system needs root (postfix and dovecot run as their own users)")
	}
	dir, err := os.MkdirTemp("/tmp", "remora-private-"+service+"-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755) // dovecot and postfix read below it as their own users
	p := &Private{Service: service, Dir: dir, t: t}
	port := func(name string) { p.ports = append(p.ports, name+"="+strconv.Itoa(FreePort(t))) }
	switch service {
	case "mail":
		for _, k := range []string{"REMORA_MAIL_SMTP_PORT", "REMORA_MAIL_SUBMISSION_PORT", "REMORA_MAIL_SMTPS_PORT",
			"REMORA_MAIL_IMAP_PORT", "REMORA_MAIL_IMAPS_PORT", "REMORA_MAILMAN_LMTP_PORT"} {
			port(k)
		}
	case "matrix":
		port("MATRIX_PORT")
		port("MATRIX_RL_PORT")
		p.ports = append(p.ports, "MATRIX_INSTANCES=main")
	case "git":
		port("REMORA_GIT_DAEMON_PORT")
		port("REMORA_GIT_SSH_PORT")
	}
	t.Cleanup(func() {
		p.script("down", dir)
		os.RemoveAll(dir)
	})
	if out, err := p.script("up", dir); err != nil {
		t.Fatalf("testenv: start a private %s: %v\n%s", service, err, out)
	}
	if p.env, err = readEnv(filepath.Join(dir, "env")); err != nil {
		t.Fatal(err)
	}
	return p
}

// Get returns one of the instance's KEY=VALUE settings (the names the
// shared instance writes to its env file, e.g. REMORA_MAIL_IMAP).
func (p *Private) Get(key string) string {
	p.t.Helper()
	v, ok := p.env[key]
	if !ok {
		p.t.Fatalf("testenv: private %s has no %s", p.Service, key)
	}
	return v
}

// Stop stops the instance's daemons (SIGTERM, as an operator would) and
// waits until they are gone. Its data stays for Start.
func (p *Private) Stop() error { return p.control("stop") }

// Start starts the stopped daemons again on the same ports with the same
// data, and waits until they answer.
func (p *Private) Start() error { return p.control("start") }

// MailingList makes a fresh mlmmj list name@example.test on a private mail
// system whose members are the addresses localpart@example.test (plus
// addresses such as alice+m001 put each member's copies into its own
// folder, m001 of alice).
func (p *Private) MailingList(name string, members ...string) {
	p.t.Helper()
	if p.Service != "mail" {
		p.t.Fatalf("testenv: a mailing list needs the mail service, not %s", p.Service)
	}
	if out, err := p.script(append([]string{"addlist", p.Dir, name}, members...)...); err != nil {
		p.t.Fatalf("testenv: make list %s: %v\n%s", name, err, out)
	}
}

// control runs the service script's command for op (stop or start).
func (p *Private) control(op string) error {
	cmd, dir := op, p.Dir // svc-mail.sh stop|start
	switch p.Service {
	case "matrix":
		cmd, dir = op+"-instance", filepath.Join(p.Dir, "matrix", "main")
	case "git":
		// down keeps the repositories; up starts what is not running
		cmd = map[string]string{"stop": "down", "start": "up"}[op]
	}
	if out, err := p.script(cmd, dir); err != nil {
		return fmt.Errorf("testenv: %s the private %s: %w\n%s", op, p.Service, err, out)
	}
	return nil
}

func (p *Private) script(args ...string) (string, error) {
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.Command("bash", append([]string{filepath.Join(filepath.Dir(file), "svc-"+p.Service+".sh")}, args...)...)
	cmd.Env = append(os.Environ(), p.ports...)
	if p.Service == "matrix" {
		cmd.Env = append(cmd.Env, "DENDRITE_BIN="+dendriteBin())
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func dendriteBin() string {
	if b := os.Getenv("DENDRITE_BIN"); b != "" {
		return b
	}
	return "/usr/local/bin/dendrite"
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func readEnv(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("testenv: %w", err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "="); ok {
			out[k] = v
		}
	}
	return out, sc.Err()
}
