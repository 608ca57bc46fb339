// Command httpfile is a complete remora adapter for a WebDAV folder (nginx
// dav, Apache mod_dav, rclone serve webdav, golang.org/x/net/webdav): each
// envelope is a file named by its idempotency key, listed with PROPFIND and
// numbered by sdk/seqindex. docs/adapter-guide.md walks through it.
package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/remora-p2p/remora/sdk"
	"github.com/remora-p2p/remora/sdk/seqindex"
)

func main() { sdk.Main(adapter{}) }

const listMax = 16 << 20 // a listing or an answer to a PUT, bytes

var caps = sdk.Capabilities{MaxPayload: 64 << 10, Counting: sdk.CountBytes, PollInterval: sdk.Duration(time.Second), Delete: sdk.DeleteNone, Idempotency: sdk.Idempotency{Level: sdk.IdempotencyStrong}}

type adapter struct{}

func (adapter) Info() sdk.Info { return sdk.Info{Name: "httpfile", Version: "1", Defaults: caps} }

func (adapter) Configure(ctx context.Context, req sdk.ConfigureRequest) (sdk.Channel, error) {
	var cfg struct{ URL string } // {"url": "https://dav.example.org/circle/"}
	if err := sdk.DecodeConfig(req.Config, &cfg); err != nil {
		return nil, err
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, sdk.Errorf(sdk.CodeBadConfig, "httpfile: url %q: want http(s)://host/folder/", cfg.URL)
	}
	u.Path = path.Join("/", u.Path) + "/"
	idx, _, err := seqindex.Open(filepath.Join(req.StateDir, "index"), u.String())
	if err != nil {
		return nil, fmt.Errorf("httpfile: open the index: %w", err)
	}
	c := &channel{base: u, user: req.Secrets["username"], pass: req.Secrets["password"], idx: idx, http: &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}}
	if _, err := c.do(ctx, "PROPFIND", "", nil, listMax); err != nil { // can we list it?
		return nil, errors.Join(err, c.Close())
	}
	return c, nil
}

type channel struct {
	base       *url.URL
	user, pass string
	idx        *seqindex.Index
	http       *http.Client // its own, so that Close drops its connections
	life       sdk.Lifecycle
	health     atomic.Pointer[sdk.Health] // after the last request
}

func (c *channel) Capabilities() sdk.Capabilities { return caps }
func (c *channel) Close() error {
	return c.life.Close(func() error { c.http.CloseIdleConnections(); return c.idx.Close() })
}

// do sends a request for file name ("": the folder): a 2xx body (at most limit bytes), nil if gone, or a typed error.
func (c *channel) do(ctx context.Context, method, name string, body []byte, limit int64) ([]byte, error) {
	// The URL was checked in Configure; Depth is for PROPFIND: the folder and its files.
	req, _ := http.NewRequestWithContext(ctx, method, c.base.JoinPath(name).String(), bytes.NewReader(body))
	req.Header.Set("Depth", "1")
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	resp, err := c.http.Do(req)
	if err == nil && resp.StatusCode == http.StatusNotFound && name != "" {
		resp.Body.Close()
		return nil, nil // deleted since it was listed
	}
	if err = sdk.HTTPError("httpfile: "+method+" "+name, resp, err); err == nil {
		defer resp.Body.Close()
		body, err = io.ReadAll(io.LimitReader(resp.Body, limit))
	}
	if h := (sdk.Health{State: sdk.HealthOK}); ctx.Err() == nil { // a cancelled call says nothing
		if err != nil {
			h = sdk.Health{State: sdk.HealthDown, Message: err.Error()}
		}
		c.health.Store(&h)
	}
	return body, err
}

func (c *channel) Publish(ctx context.Context, req sdk.PublishRequest) (sdk.PublishResponse, error) {
	ctx, end, err := c.life.Begin(ctx)
	if err != nil {
		return sdk.PublishResponse{}, err
	}
	defer end()
	return sdk.PublishEach(ctx, req, caps, func(ctx context.Context, it sdk.PublishItem) (string, error) {
		_, err := c.do(ctx, "PUT", it.IdempotencyKey, it.Data, listMax) // the key names the file: a repeated key rewrites it
		return it.IdempotencyKey, err
	})
}

func (c *channel) Subscribe(ctx context.Context, req sdk.SubscribeRequest, sink sdk.Sink) error {
	ctx, end, err := c.life.Begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	pos, err := c.idx.Start(req.Cursor) // before any listing: checks the cursor against the index
	for ; err == nil; err = sdk.Sleep(ctx, caps.PollInterval.D()) {
		var list struct {
			Href []string `xml:"response>href"`
		}
		body, err := c.do(ctx, "PROPFIND", "", nil, listMax)
		if err != nil {
			return err
		}
		if err := xml.Unmarshal(body, &list); err != nil {
			return sdk.Errorf(sdk.CodeUnavailable, "httpfile: listing: %v", err)
		}
		var names []string
		for _, h := range list.Href {
			if u, err := url.Parse(h); err == nil && path.Dir(u.Path)+"/" == c.base.Path && sdk.ValidKey(path.Base(u.Path)) {
				names = append(names, path.Base(u.Path)) // a file of ours, not the folder or anything else
			}
		}
		if _, err := c.idx.Add(names...); err != nil {
			return fmt.Errorf("httpfile: index: %w", err)
		}
		for _, e := range c.idx.After(pos) {
			data, err := c.do(ctx, "GET", e.Name, nil, int64(caps.MaxPayload)+1) // one byte more: too large, skipped
			if err != nil {
				return err
			}
			if err := sink.Deliver(ctx, sdk.Delivery{ID: e.Name, Data: data, Skip: data == nil || len(data) > caps.MaxPayload, Cursor: c.idx.Cursor(e.Seq)}); err != nil {
				return err
			}
			pos = e.Seq
		}
	}
	return err
}

func (c *channel) Health(context.Context) sdk.Health { return *c.health.Load() }
