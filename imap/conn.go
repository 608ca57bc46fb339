package imap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/remora-p2p/remora/sdk"
)

// dial opens a TLS (or, with insecure_plaintext, plain) TCP connection to
// addr as mode says; for STARTTLS the plain connection is returned and the
// protocol client upgrades it.
func (c Config) dial(ctx context.Context, addr, mode string) (net.Conn, error) {
	d := net.Dialer{Timeout: c.Timeout.D()}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if mode != TLSImplicit {
		return conn, nil
	}
	tc, err := c.tlsConfig(addr)
	if err != nil {
		conn.Close()
		return nil, err
	}
	tconn := tls.Client(conn, tc)
	hctx, cancel := context.WithTimeout(ctx, c.Timeout.D())
	defer cancel()
	if err := tconn.HandshakeContext(hctx); err != nil {
		conn.Close()
		return nil, err
	}
	return tconn, nil
}

// dialIMAP connects and logs in. handler receives unsolicited EXISTS etc.
func (ch *channel) dialIMAP(ctx context.Context, handler *imapclient.UnilateralDataHandler) (*imapclient.Client, error) {
	cfg := ch.cfg
	conn, err := cfg.dial(ctx, cfg.IMAP, cfg.IMAPTLS)
	if err != nil {
		return nil, classify("connect to IMAP server "+cfg.IMAP, cfg.IMAPTLS, err)
	}
	opts := &imapclient.Options{UnilateralDataHandler: handler}
	var c *imapclient.Client
	if cfg.IMAPTLS == TLSStartTLS {
		tc, err := cfg.tlsConfig(cfg.IMAP)
		if err != nil {
			conn.Close()
			return nil, err
		}
		opts.TLSConfig = tc
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		c, err = imapclient.NewStartTLS(conn, opts)
		stop()
		if err != nil {
			return nil, classify("STARTTLS with IMAP server "+cfg.IMAP, cfg.IMAPTLS, err)
		}
	} else {
		c = imapclient.New(conn, opts)
	}
	ch.sockets.Store(c, conn)
	go func() {
		<-c.Closed()
		ch.sockets.Delete(c)
	}()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if _, err := within(c, "greeting", cfg.Timeout.D(), func() (struct{}, error) { return struct{}{}, c.WaitGreeting() }); err != nil {
		c.Close()
		return nil, classify("greeting of IMAP server "+cfg.IMAP, cfg.IMAPTLS, err)
	}
	if _, err := within(c, "login", cfg.Timeout.D(), func() (struct{}, error) { return struct{}{}, c.Login(cfg.Username, ch.password).Wait() }); err != nil {
		c.Close()
		var ie *imap.Error
		if errors.As(err, &ie) && ie.Type == imap.StatusResponseTypeNo {
			return nil, sdk.Errorf(sdk.CodeAuthFailed, "imap: login as %q at %s rejected (%s): check the username and the password secret; providers with two-factor login need an app password: %w", cfg.Username, cfg.IMAP, ie.Text, err)
		}
		return nil, classify("login at IMAP server "+cfg.IMAP, cfg.IMAPTLS, err)
	}
	if ctx.Err() != nil {
		c.Close()
		return nil, ctx.Err()
	}
	return c, nil
}

// classify turns a connection or protocol error into a typed sdk error with
// advice. op says what was being done.
func classify(op, tlsMode string, err error) error {
	var se *sdk.Error
	if errors.As(err, &se) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var (
		certErr  *tls.CertificateVerificationError
		authErr  x509.UnknownAuthorityError
		hostErr  x509.HostnameError
		invalid  x509.CertificateInvalidError
		recErr   tls.RecordHeaderError
		alertErr tls.AlertError
		ie       *imap.Error
		smtpErr  *smtp.SMTPError
	)
	switch {
	case errors.As(err, &hostErr):
		return sdk.Errorf(sdk.CodeBadConfig, "imap: %s: TLS certificate is not valid for this host name (%v): use the server's proper name, or set tls_server_name: %w", op, hostErr, err)
	case errors.As(err, &certErr), errors.As(err, &authErr), errors.As(err, &invalid):
		return sdk.Errorf(sdk.CodeBadConfig, "imap: %s: TLS certificate not trusted (%v): if the server uses a private CA, set ca_file to it; otherwise someone may be intercepting the connection: %w", op, err, err)
	case errors.As(err, &recErr):
		hint := `the port does not speak TLS first: set the *_tls field to "starttls"`
		return sdk.Errorf(sdk.CodeBadConfig, "imap: %s: TLS handshake failed, %s: %w", op, hint, err)
	case errors.As(err, &alertErr):
		return sdk.Errorf(sdk.CodeBadConfig, "imap: %s: the server refused the TLS handshake (%v): check the port and the TLS mode: %w", op, alertErr, err)
	case errors.As(err, &ie):
		switch ie.Code {
		case imap.ResponseCodeAuthenticationFailed, imap.ResponseCodeAuthorizationFailed, imap.ResponseCodeExpired:
			return sdk.Errorf(sdk.CodeAuthFailed, "imap: %s: %s: check the username and password: %w", op, ie.Text, err)
		case imap.ResponseCodeOverQuota, imap.ResponseCodeLimit:
			return sdk.Errorf(sdk.CodeNeedsUserAction, "imap: %s: mailbox over quota (%s): delete mail or raise the quota; with consumed \"delete\" remora cleans up after itself: %w", op, ie.Text, err)
		case imap.ResponseCodeTooBig:
			return sdk.Errorf(sdk.CodeTooLarge, "imap: %s: the server refused the size (%s): %w", op, ie.Text, err)
		case imap.ResponseCodeNonExistent, imap.ResponseCodeTryCreate:
			return sdk.Errorf(sdk.CodeNotFound, "imap: %s: folder does not exist (%s): create it or fix the folder name: %w", op, ie.Text, err)
		case imap.ResponseCodeUnavailable, imap.ResponseCodeInUse:
			return &sdk.Error{Code: sdk.CodeUnavailable, Message: fmt.Sprintf("imap: %s: server busy (%s)", op, ie.Text), Err: err}
		case imap.ResponseCodeNoPerm:
			return sdk.Errorf(sdk.CodeNeedsUserAction, "imap: %s: permission denied (%s): %w", op, ie.Text, err)
		}
		if ie.Type == imap.StatusResponseTypeBye {
			return &sdk.Error{Code: sdk.CodeUnavailable, Message: fmt.Sprintf("imap: %s: server closed the session (%s)", op, ie.Text), Err: err}
		}
		return sdk.Errorf(sdk.CodeUnknown, "imap: %s: %w", op, err)
	case errors.As(err, &smtpErr):
		return classifySMTP(op, smtpErr)
	}
	msg := err.Error()
	if strings.Contains(msg, "STARTTLS") || strings.Contains(msg, "starttls") {
		return sdk.Errorf(sdk.CodeBadConfig, "imap: %s: STARTTLS failed (%v): the server may not offer it; use the implicit-TLS port (993/465) with *_tls \"implicit\": %w", op, err, err)
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return &sdk.Error{Code: sdk.CodeUnavailable, Message: fmt.Sprintf("imap: %s: %v (is the server up and the address right?)", op, err), Err: err}
	}
	return &sdk.Error{Code: sdk.CodeUnavailable, Message: fmt.Sprintf("imap: %s: %v", op, err), Err: err}
}

// classifySMTP maps SMTP reply codes (RFC 5321, enhanced codes RFC 3463).
func classifySMTP(op string, e *smtp.SMTPError) error {
	ec := e.EnhancedCode
	switch {
	case e.Code == 535 || e.Code == 534 || e.Code == 530 || (ec[1] == 7 && ec[2] == 8):
		return sdk.Errorf(sdk.CodeAuthFailed, "imap: %s: SMTP login rejected (%d %s): check the username and the password secret (or smtp_password): %w", op, e.Code, e.Message, e)
	case ec[1] == 2 && ec[2] == 2:
		return sdk.Errorf(sdk.CodeNeedsUserAction, "imap: %s: recipient mailbox full (%d %s): %w", op, e.Code, e.Message, e)
	case e.Code == 552 || (ec[1] == 3 && ec[2] == 4):
		return sdk.Errorf(sdk.CodeTooLarge, "imap: %s: mail too large for the server (%d %s): lower max_mail_bytes: %w", op, e.Code, e.Message, e)
	case e.Code == 550 && ec[1] == 1:
		return sdk.Errorf(sdk.CodeNotFound, "imap: %s: address rejected (%d %s): check list_address or the recipients: %w", op, e.Code, e.Message, e)
	case e.Code == 421 || e.Code == 450 || e.Code == 451 || e.Code == 452 || e.Code/100 == 4:
		return &sdk.Error{Code: sdk.CodeUnavailable, Message: fmt.Sprintf("imap: %s: SMTP server says try later (%d %s)", op, e.Code, e.Message), Err: e}
	}
	return sdk.Errorf(sdk.CodeUnknown, "imap: %s: SMTP %d %s: %w", op, e.Code, e.Message, e)
}

// dialSMTP connects to the submission server and authenticates.
func (ch *channel) dialSMTP(ctx context.Context) (*smtp.Client, error) {
	cfg := ch.cfg
	conn, err := cfg.dial(ctx, cfg.SMTP, cfg.SMTPTLS)
	if err != nil {
		return nil, classify("connect to SMTP server "+cfg.SMTP, cfg.SMTPTLS, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var c *smtp.Client
	if cfg.SMTPTLS == TLSStartTLS {
		tc, err := cfg.tlsConfig(cfg.SMTP)
		if err != nil {
			conn.Close()
			return nil, err
		}
		c, err = smtp.NewClientStartTLS(conn, tc)
		if err != nil {
			conn.Close()
			return nil, classify("STARTTLS with SMTP server "+cfg.SMTP, cfg.SMTPTLS, err)
		}
	} else {
		c = smtp.NewClient(conn)
	}
	c.CommandTimeout = cfg.Timeout.D()
	c.SubmissionTimeout = cfg.Timeout.D()
	if user := cfg.smtpUser(); user != "" {
		if err := c.Auth(sasl.NewPlainClient("", user, ch.smtpPassword)); err != nil {
			c.Close()
			return nil, classify("login at SMTP server "+cfg.SMTP+" as "+fmt.Sprintf("%q", user), cfg.SMTPTLS, err)
		}
	} else if err := c.Hello("localhost"); err != nil {
		c.Close()
		return nil, classify("EHLO at SMTP server "+cfg.SMTP, cfg.SMTPTLS, err)
	}
	if ctx.Err() != nil {
		c.Close()
		return nil, ctx.Err()
	}
	return c, nil
}
