package imap

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/mail"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/remora-p2p/remora/sdk"
)

// Modes.
const (
	ModeList   = "list"
	ModeShared = "shared"
	ModeDirect = "direct"
)

// TLS modes for a server connection.
const (
	TLSImplicit = "implicit" // TLS from the first byte (993, 465)
	TLSStartTLS = "starttls" // plaintext greeting, then STARTTLS (143, 587)
	TLSNone     = "none"     // only with insecure_plaintext: true
)

// What to do with a mail once the host deleted (consumed) all its items.
const (
	ConsumedKeep   = "keep"
	ConsumedMove   = "move"
	ConsumedDelete = "delete"
)

// Config is a mail channel's configuration (ConfigureRequest.Config).
// Secrets: "password" (IMAP, and SMTP unless "smtp_password" is set).
type Config struct {
	// Mode is "list", "shared" or "direct".
	Mode string `json:"mode"`
	// IMAP is the IMAP server as host:port.
	IMAP string `json:"imap"`
	// IMAPTLS is "implicit" or "starttls"; default implicit for port 993,
	// starttls otherwise.
	IMAPTLS string `json:"imap_tls,omitempty"`
	// SMTP is the submission server as host:port (list and direct modes).
	SMTP string `json:"smtp,omitempty"`
	// SMTPTLS is "implicit" or "starttls"; default implicit for port 465,
	// starttls otherwise.
	SMTPTLS string `json:"smtp_tls,omitempty"`
	// InsecurePlaintext allows connections without TLS (tests, loopback).
	InsecurePlaintext bool `json:"insecure_plaintext,omitempty"`
	// CAFile is a PEM file of CAs to trust instead of the system roots.
	CAFile string `json:"ca_file,omitempty"`
	// TLSServerName overrides the name checked in the server certificate.
	TLSServerName string `json:"tls_server_name,omitempty"`
	// Username is the IMAP login (and SMTP login unless SMTPUsername is set).
	Username string `json:"username"`
	// SMTPUsername is the SMTP login; "-" sends without SMTP AUTH (a relay
	// that trusts the network).
	SMTPUsername string `json:"smtp_username,omitempty"`
	// Address is the account's own mail address (From).
	Address string `json:"address"`
	// ListAddress is the list's posting address (list mode).
	ListAddress string `json:"list_address,omitempty"`
	// ListID is the list's List-Id (the part in angle brackets); default:
	// the list address with '@' replaced by '.' (mlmmj, Mailman, Sympa).
	ListID string `json:"list_id,omitempty"`
	// Folder is the folder read (and, in shared mode, appended to). Default
	// INBOX; in shared mode "sync".
	Folder string `json:"folder,omitempty"`
	// ExtraFolders are read too (e.g. "Junk"), polled every PollInterval.
	ExtraFolders []string `json:"extra_folders,omitempty"`
	// Consumed is what Delete does with a mail: "keep" (default), "move"
	// (to ConsumedFolder) or "delete" (flag \Deleted and expunge).
	Consumed string `json:"consumed,omitempty"`
	// ConsumedFolder is where "move" puts consumed mail (default
	// "sync-done"; created if missing).
	ConsumedFolder string `json:"consumed_folder,omitempty"`
	// IdleRestart re-issues IDLE before servers drop it (default 20m;
	// RFC 9051 servers may drop it after 30 min).
	IdleRestart sdk.Duration `json:"idle_restart,omitempty"`
	// NoIdle polls every poll_interval even where the server offers IDLE
	// (for servers or middleboxes that break long-lived IDLE).
	NoIdle bool `json:"no_idle,omitempty"`
	// DrainInterval is the least time between two reads of the folder
	// while mail keeps arriving (default 1s). A list hands a round of
	// posts to its members one after another, so they arrive in bursts;
	// without it each burst cost a read, and the reads per round grew with
	// the list (BENCHMARKS.md, "Scale through a mailing list"). Mail that
	// arrives after a quiet spell is read at once.
	DrainInterval sdk.Duration `json:"drain_interval,omitempty"`
	// PollInterval is how often folders are polled where IDLE is missing,
	// and how often ExtraFolders are checked (default 60s).
	PollInterval sdk.Duration `json:"poll_interval,omitempty"`
	// MaxMailBytes is the largest mail sent (default 4 MiB; in list mode
	// 40 KiB, the size above which Mailman holds a post for its moderator
	// by default). Batches are split to stay below it with room for what
	// servers add on the way; mails up to 64 KiB larger are read, bigger
	// ones are skipped unread.
	MaxMailBytes int64 `json:"max_mail_bytes,omitempty"`
	// MaxItemsPerMail bounds how many items one mail carries (default 256).
	MaxItemsPerMail int `json:"max_items_per_mail,omitempty"`
	// NoConfirm (list mode) makes Publish return once the SMTP server took
	// the mail, without waiting for the list's verdict (verdict.go).
	NoConfirm bool `json:"no_confirm,omitempty"`
	// ConfirmTimeout (list mode) is how long Publish waits for each mail to
	// come back through the list, or for the list's notice that it held or
	// rejected it (default 60s).
	ConfirmTimeout sdk.Duration `json:"confirm_timeout,omitempty"`
	// Timeout bounds each connect and command round (default 30s).
	Timeout sdk.Duration `json:"timeout,omitempty"`
}

const (
	defaultSharedFolder   = "sync"
	defaultConsumedFolder = "sync-done"
	defaultMaxMail        = 4 << 20
	// defaultListMaxMail is Mailman 3's default max_message_size (40 KB,
	// counted in units of 1024 bytes): a larger post is held for the
	// moderator. Lists of other managers allow at least as much by default.
	defaultListMaxMail = 40 << 10
	// minMaxMail is the smallest max_mail_bytes accepted.
	minMaxMail = 16 << 10
	// mailHeadroom is what planning leaves free in every mail for our own
	// headers and what servers add on the way (Received, DKIM and ARC
	// signatures, list headers) before a list checks the size.
	mailHeadroom    = 8 << 10
	defaultMaxItems = 256
	// maxItemBytes is the largest item Publish accepts (MaxPayload).
	maxItemBytes = 1 << 20
)

func badConfig(format string, args ...any) error {
	return sdk.Errorf(sdk.CodeBadConfig, "imap: "+format, args...)
}

// parseConfig decodes and validates raw, filling defaults.
func parseConfig(raw json.RawMessage) (Config, error) {
	var c Config
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, badConfig("config: %v (see docs/channel-mail.md for the fields)", err)
	}
	switch c.Mode {
	case ModeList, ModeShared, ModeDirect:
	case "":
		return c, badConfig(`config: "mode" is required: "list", "shared" or "direct"`)
	default:
		return c, badConfig(`config: unknown "mode" %q: use "list", "shared" or "direct"`, c.Mode)
	}
	if err := checkHostPort("imap", c.IMAP); err != nil {
		return c, err
	}
	var err error
	if c.IMAPTLS, err = tlsMode("imap_tls", c.IMAPTLS, c.IMAP, "993", c.InsecurePlaintext); err != nil {
		return c, err
	}
	if c.Username == "" {
		return c, badConfig(`config: "username" (the IMAP login) is required`)
	}
	if c.Mode != ModeShared {
		if err := checkHostPort("smtp", c.SMTP); err != nil {
			return c, err
		}
		if c.SMTPTLS, err = tlsMode("smtp_tls", c.SMTPTLS, c.SMTP, "465", c.InsecurePlaintext); err != nil {
			return c, err
		}
	}
	if c.Address == "" && c.Mode != ModeShared {
		return c, badConfig(`config: "address" (this account's mail address) is required in %s mode`, c.Mode)
	}
	if c.Address == "" {
		c.Address = "sync@" + defaultIDDomain
		if strings.Contains(c.Username, "@") {
			c.Address = c.Username
		}
	}
	if _, err := mail.ParseAddress(c.Address); err != nil {
		return c, badConfig(`config: "address" %q is not a mail address`, c.Address)
	}
	if c.Mode == ModeList {
		if _, err := mail.ParseAddress(c.ListAddress); err != nil {
			return c, badConfig(`config: "list_address" %q is not a mail address (list mode needs the list's posting address)`, c.ListAddress)
		}
		if c.ListID == "" {
			c.ListID = strings.ReplaceAll(c.ListAddress, "@", ".")
		}
		c.ListID = listIDValue(c.ListID)
	}
	if c.Folder == "" {
		c.Folder = "INBOX"
		if c.Mode == ModeShared {
			c.Folder = defaultSharedFolder
		}
	}
	for _, f := range c.ExtraFolders {
		if f == "" || f == c.Folder {
			return c, badConfig(`config: "extra_folders" has an empty name or repeats "folder"`)
		}
	}
	switch c.Consumed {
	case "":
		c.Consumed = ConsumedKeep
	case ConsumedKeep, ConsumedDelete:
	case ConsumedMove:
		if c.ConsumedFolder == "" {
			c.ConsumedFolder = defaultConsumedFolder
		}
	default:
		return c, badConfig(`config: unknown "consumed" %q: use "keep", "move" or "delete"`, c.Consumed)
	}
	if c.IdleRestart <= 0 {
		c.IdleRestart = sdk.Duration(20 * time.Minute)
	}
	if c.PollInterval <= 0 {
		c.PollInterval = sdk.Duration(60 * time.Second)
	}
	if c.DrainInterval <= 0 {
		c.DrainInterval = sdk.Duration(time.Second)
	}
	if c.Timeout <= 0 {
		c.Timeout = sdk.Duration(30 * time.Second)
	}
	if c.ConfirmTimeout <= 0 {
		c.ConfirmTimeout = sdk.Duration(60 * time.Second)
	}
	if c.MaxMailBytes <= 0 {
		c.MaxMailBytes = defaultMaxMail
		if c.Mode == ModeList {
			c.MaxMailBytes = defaultListMaxMail
		}
	}
	if c.MaxMailBytes < minMaxMail {
		return c, badConfig(`config: "max_mail_bytes" %d is below %d (16 KiB)`, c.MaxMailBytes, minMaxMail)
	}
	if c.MaxItemsPerMail <= 0 {
		c.MaxItemsPerMail = defaultMaxItems
	}
	if c.MaxItemsPerMail > maxItemsPerMail {
		return c, badConfig(`config: "max_items_per_mail" %d is above %d`, c.MaxItemsPerMail, maxItemsPerMail)
	}
	if c.CAFile != "" {
		if _, err := loadCAs(c.CAFile); err != nil {
			return c, err
		}
	}
	return c, nil
}

func checkHostPort(field, v string) error {
	if v == "" {
		return badConfig(`config: %q (host:port of the server) is required`, field)
	}
	if _, _, err := net.SplitHostPort(v); err != nil {
		return badConfig(`config: %q %q is not host:port`, field, v)
	}
	return nil
}

// tlsMode validates or defaults a TLS mode for addr.
func tlsMode(field, mode, addr, implicitPort string, insecure bool) (string, error) {
	_, port, _ := net.SplitHostPort(addr)
	switch mode {
	case "":
		if port == implicitPort {
			return TLSImplicit, nil
		}
		return TLSStartTLS, nil
	case TLSImplicit, TLSStartTLS:
		return mode, nil
	case TLSNone:
		if !insecure {
			return "", badConfig(`config: %q is "none" but "insecure_plaintext" is not true: plaintext sends the password in clear; set both only for a server on loopback`, field)
		}
		return mode, nil
	default:
		return "", badConfig(`config: unknown %q %q: use "implicit", "starttls" or "none"`, field, mode)
	}
}

func loadCAs(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, badConfig(`config: "ca_file": %v`, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, badConfig(`config: "ca_file" %s holds no PEM certificate`, path)
	}
	return pool, nil
}

// tlsConfig returns the client TLS configuration for addr.
func (c Config) tlsConfig(addr string) (*tls.Config, error) {
	host, _, _ := net.SplitHostPort(addr)
	tc := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if c.TLSServerName != "" {
		tc.ServerName = c.TLSServerName
	}
	if c.CAFile != "" {
		pool, err := loadCAs(c.CAFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// smtpUser returns the SMTP login, "" for none.
func (c Config) smtpUser() string {
	switch c.SMTPUsername {
	case "-":
		return ""
	case "":
		return c.Username
	}
	return c.SMTPUsername
}

// readLimit is the largest mail downloaded: max_mail_bytes plus room for
// what a list manager adds on the way (headers, footers, re-encoding).
func (c Config) readLimit() int64 { return c.MaxMailBytes + 64<<10 }

// sender is the poster of p: From, or, where a list rewrote From to its own
// address (DMARC mitigation: Mailman's munge_from, Sympa's
// dmarc_protection), the address the list says the post came from:
// X-Original-From, else a single Reply-To or Cc address that is not the
// list's.
func (c Config) sender(p parsedMail) string {
	if c.Mode != ModeList || (p.From != "" && !strings.EqualFold(p.From, c.ListAddress)) {
		return p.From
	}
	if p.OriginalFrom != "" {
		return p.OriginalFrom
	}
	for _, list := range [][]string{p.ReplyTo, p.Cc} {
		others := slices.DeleteFunc(slices.Clone(list), func(a string) bool { return strings.EqualFold(a, c.ListAddress) })
		if len(others) == 1 {
			return others[0]
		}
	}
	return p.From
}

// folders returns every watched folder, the IDLE one first.
func (c Config) folders() []string {
	return append([]string{c.Folder}, c.ExtraFolders...)
}
