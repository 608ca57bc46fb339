package dir

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/remora-p2p/remora/sdk"
)

// Config is a dir channel's configuration, as JSON:
//
//	{"path": "/home/ana/Sync/remora", "watch": "auto", "poll_interval": "250ms", "retention": "168h", "max_payload": 1048576}
type Config struct {
	// Path is the shared folder. It must exist and be writable; dir creates
	// its board/ and log/ folders inside.
	Path string `json:"path"`
	// Watch says whether Subscribe learns of new files from the operating
	// system (inotify and its kin, through fsnotify) instead of polling:
	// "auto" (the default) watches unless the folder is on a network or
	// FUSE filesystem, whose remote changes no local watch sees; "on"
	// watches anyway; "off" always polls.
	Watch string `json:"watch,omitempty"`
	// PollInterval is how often Subscribe looks for new files when the
	// folder is not watched (default 250ms, at least 10ms).
	PollInterval sdk.Duration `json:"poll_interval,omitempty"`
	// RescanInterval is how often a watched folder is scanned all the
	// same, a safety net for changes a watch misses (default 1m, at least
	// poll_interval).
	RescanInterval sdk.Duration `json:"rescan_interval,omitempty"`
	// Retention is how long envelopes are kept before their hour bucket is
	// removed (default 168h, at least 1h).
	Retention sdk.Duration `json:"retention,omitempty"`
	// MaxPayload is the largest envelope in bytes (default 1 MiB, at most
	// 64 MiB).
	MaxPayload int `json:"max_payload,omitempty"`
}

const (
	defaultPoll       = 250 * time.Millisecond
	defaultRescan     = time.Minute
	minPoll           = 10 * time.Millisecond
	defaultRetention  = 168 * time.Hour
	minRetention      = time.Hour
	defaultMaxPayload = 1 << 20
	maxMaxPayload     = 64 << 20
)

// parseConfig decodes and validates raw, filling in defaults. Every error is
// an *sdk.Error with CodeBadConfig naming the field.
func parseConfig(raw json.RawMessage) (Config, error) {
	var c Config
	var w struct {
		Path           string `json:"path"`
		Watch          string `json:"watch"`
		PollInterval   string `json:"poll_interval"`
		RescanInterval string `json:"rescan_interval"`
		Retention      string `json:"retention"`
		MaxPayload     int    `json:"max_payload"`
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return c, sdk.Errorf(sdk.CodeBadConfig, "dir: config is empty: give at least {\"path\": \"/the/shared/folder\"}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return c, sdk.Errorf(sdk.CodeBadConfig, "dir: config: %s", explainJSON(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return c, sdk.Errorf(sdk.CodeBadConfig, "dir: config: trailing data after the JSON object")
	}
	c.Path, c.MaxPayload, c.Watch = w.Path, w.MaxPayload, w.Watch
	for _, d := range []struct {
		field string
		in    string
		out   *sdk.Duration
	}{{"poll_interval", w.PollInterval, &c.PollInterval}, {"rescan_interval", w.RescanInterval, &c.RescanInterval}, {"retention", w.Retention, &c.Retention}} {
		if d.in == "" {
			continue
		}
		v, err := time.ParseDuration(d.in)
		if err != nil {
			return c, sdk.Errorf(sdk.CodeBadConfig, "dir: config: %q is %q: want a duration such as \"250ms\" or \"168h\"", d.field, d.in)
		}
		*d.out = sdk.Duration(v)
	}
	switch {
	case strings.TrimSpace(c.Path) == "":
		return c, sdk.Errorf(sdk.CodeBadConfig, "dir: config: \"path\" is required: the shared folder to use")
	case c.Watch != "" && c.Watch != watchAuto && c.Watch != watchOn && c.Watch != watchOff:
		return c, sdk.Errorf(sdk.CodeBadConfig, "dir: config: \"watch\" is %q: use \"auto\", \"on\" or \"off\"", c.Watch)
	case c.PollInterval != 0 && c.PollInterval.D() < minPoll:
		return c, sdk.Errorf(sdk.CodeBadConfig, "dir: config: \"poll_interval\" is %s: use at least %s", c.PollInterval.D(), minPoll)
	case c.Retention != 0 && c.Retention.D() < minRetention:
		return c, sdk.Errorf(sdk.CodeBadConfig, "dir: config: \"retention\" is %s: use at least %s", c.Retention.D(), minRetention)
	case c.MaxPayload < 0 || c.MaxPayload > maxMaxPayload:
		return c, sdk.Errorf(sdk.CodeBadConfig, "dir: config: \"max_payload\" is %d: use 1 to %d bytes", c.MaxPayload, maxMaxPayload)
	}
	if c.PollInterval == 0 {
		c.PollInterval = sdk.Duration(defaultPoll)
	}
	if c.Watch == "" {
		c.Watch = watchAuto
	}
	if c.RescanInterval == 0 {
		c.RescanInterval = sdk.Duration(max(defaultRescan, c.PollInterval.D()))
	}
	if c.RescanInterval.D() < c.PollInterval.D() {
		return c, sdk.Errorf(sdk.CodeBadConfig, "dir: config: \"rescan_interval\" is %s: use at least poll_interval (%s)", c.RescanInterval.D(), c.PollInterval.D())
	}
	if c.Retention == 0 {
		c.Retention = sdk.Duration(defaultRetention)
	}
	if c.MaxPayload == 0 {
		c.MaxPayload = defaultMaxPayload
	}
	return c, nil
}

// explainJSON turns a decoding error into a message that names the field.
func explainJSON(err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te) && te.Field != "":
		return fmt.Sprintf("%q must be a %s, got %s", te.Field, expected(te.Field), te.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "not valid JSON: it ends too early"
	case errors.As(err, &se):
		return fmt.Sprintf("not valid JSON at byte %d: %v", se.Offset, err)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return strings.TrimPrefix(err.Error(), "json: ") + ": the fields are path, watch, poll_interval, rescan_interval, retention, max_payload"
	default:
		return err.Error()
	}
}

func expected(field string) string {
	switch field {
	case "path", "watch":
		return "string"
	case "max_payload":
		return "number of bytes"
	default:
		return "duration string such as \"250ms\""
	}
}
