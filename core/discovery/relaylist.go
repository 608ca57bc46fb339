package discovery

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"aead.dev/minisign"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// RelayList is a verified list of volunteer relays.
type RelayList struct {
	Seq     uint64
	Expires time.Time
	Relays  []peer.AddrInfo
}

// Errors of ParseRelayList.
var (
	ErrBadSignature = errors.New("discovery: relay list signature does not verify")
	ErrListExpired  = errors.New("discovery: relay list expired")
	ErrRollback     = errors.New("discovery: relay list is older than one accepted before")
	ErrListFormat   = errors.New("discovery: malformed relay list")
)

// maxListSize bounds a fetched list.
const maxListSize = 256 << 10

// ParseRelayList verifies sig over data with any of keys, then parses it. A
// list whose sequence is below minSeq is refused (rollback).
func ParseRelayList(data, sig []byte, keys []minisign.PublicKey, now time.Time, minSeq uint64) (*RelayList, error) {
	ok := false
	for _, k := range keys {
		if minisign.Verify(k, data, sig) {
			ok = true
			break
		}
	}
	if !ok {
		return nil, ErrBadSignature
	}
	l, err := parseRelayList(data)
	if err != nil {
		return nil, err
	}
	if !l.Expires.After(now) {
		return nil, fmt.Errorf("%w on %s: fetch a newer one", ErrListExpired, l.Expires.Format(time.DateOnly))
	}
	if l.Seq < minSeq {
		return nil, fmt.Errorf("%w: seq %d < %d", ErrRollback, l.Seq, minSeq)
	}
	return l, nil
}

func parseRelayList(data []byte) (*RelayList, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	l := &RelayList{}
	header := false
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		if !header {
			f := strings.Fields(text)
			if len(f) != 4 || f[0] != "remora-relays" || f[1] != "v1" ||
				!strings.HasPrefix(f[2], "seq=") || !strings.HasPrefix(f[3], "expires=") {
				return nil, fmt.Errorf("%w: line %d: want \"remora-relays v1 seq=N expires=TIME\"", ErrListFormat, line)
			}
			seq, err := strconv.ParseUint(strings.TrimPrefix(f[2], "seq="), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%w: line %d: seq: %v", ErrListFormat, line, err)
			}
			exp, err := time.Parse(time.RFC3339, strings.TrimPrefix(f[3], "expires="))
			if err != nil {
				return nil, fmt.Errorf("%w: line %d: expires: %v", ErrListFormat, line, err)
			}
			l.Seq, l.Expires, header = seq, exp, true
			continue
		}
		addr, err := ma.NewMultiaddr(text)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrListFormat, line, err)
		}
		info, err := peer.AddrInfoFromP2pAddr(addr)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: address must end in /p2p/<peer ID>: %v", ErrListFormat, line, err)
		}
		l.Relays = append(l.Relays, *info)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrListFormat, err)
	}
	if !header {
		return nil, fmt.Errorf("%w: no header line", ErrListFormat)
	}
	return l, nil
}

// SignRelayList signs a list (for maintainers' tooling and tests).
func SignRelayList(key minisign.PrivateKey, data []byte) []byte { return minisign.Sign(key, data) }

//go:embed relays.txt
var embeddedList []byte

//go:embed relays.txt.minisig
var embeddedSig []byte

//go:embed relays.pub
var embeddedKey string

// TrustedKeys returns the project's relay-list signing keys.
func TrustedKeys() ([]minisign.PublicKey, error) {
	var k minisign.PublicKey
	if err := k.UnmarshalText([]byte(strings.TrimSpace(lastLine(embeddedKey)))); err != nil {
		return nil, fmt.Errorf("discovery: embedded relay key: %w", err)
	}
	return []minisign.PublicKey{k}, nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// SeqStore persists the highest accepted relay-list sequence (no rollback).
type SeqStore interface {
	RelayListSeq() uint64
	SetRelayListSeq(uint64) error
}

// memSeq is a SeqStore that forgets on restart.
type memSeq struct {
	mu  sync.Mutex
	seq uint64
}

func (m *memSeq) RelayListSeq() uint64 { m.mu.Lock(); defer m.mu.Unlock(); return m.seq }
func (m *memSeq) SetRelayListSeq(s uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seq = max(m.seq, s)
	return nil
}

// Bootstrap is the last box: the preloaded signed list of volunteer relays.
type Bootstrap struct {
	Data, Sig []byte // nil: the embedded list
	Keys      []minisign.PublicKey
	Seq       SeqStore
	Now       func() time.Time
}

func (b Bootstrap) Name() string { return "bootstrap" }

func (b Bootstrap) Run(ctx context.Context, emit func(Found)) error {
	data, sig := b.Data, b.Sig
	if data == nil {
		data, sig = embeddedList, embeddedSig
	}
	l, err := b.verify(data, sig)
	if err != nil {
		return fmt.Errorf("bootstrap list: %w", err)
	}
	emitRelays(l, emit)
	<-ctx.Done()
	return nil
}

func (b Bootstrap) verify(data, sig []byte) (*RelayList, error) {
	keys := b.Keys
	if keys == nil {
		var err error
		if keys, err = TrustedKeys(); err != nil {
			return nil, err
		}
	}
	seq := b.Seq
	if seq == nil {
		seq = &memSeq{}
	}
	now := time.Now
	if b.Now != nil {
		now = b.Now
	}
	l, err := ParseRelayList(data, sig, keys, now(), seq.RelayListSeq())
	if err != nil {
		return nil, err
	}
	if err := seq.SetRelayListSeq(l.Seq); err != nil {
		return nil, fmt.Errorf("save relay list seq: %w", err)
	}
	return l, nil
}

func emitRelays(l *RelayList, emit func(Found)) {
	for _, r := range l.Relays {
		emit(Found{Peer: r.ID, Addrs: r.Addrs, Relay: true})
	}
}

// WebFile fetches a signed relay list from a static URL (any web host the
// circle already has); the signature is at URL + ".minisig".
type WebFile struct {
	URL    string
	Client *http.Client
	Boot   Bootstrap // keys, seq store and clock
}

func (w WebFile) Name() string { return "web" }

func (w WebFile) Run(ctx context.Context, emit func(Found)) error {
	if w.URL == "" {
		return ErrNotConfigured
	}
	data, err := w.get(ctx, w.URL)
	if err != nil {
		return err
	}
	sig, err := w.get(ctx, w.URL+".minisig")
	if err != nil {
		return err
	}
	l, err := w.Boot.verify(data, sig)
	if err != nil {
		return fmt.Errorf("web list %s: %w", w.URL, err)
	}
	emitRelays(l, emit)
	return nil
}

func (w WebFile) get(ctx context.Context, url string) ([]byte, error) {
	c := w.Client
	if c == nil {
		c = &http.Client{Timeout: 30 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("web list: %w", err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("web list: fetch: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("web list: fetch %s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxListSize+1))
	if err != nil {
		return nil, fmt.Errorf("web list: read: %w", err)
	}
	if len(b) > maxListSize {
		return nil, fmt.Errorf("web list: %s is larger than %d bytes", url, maxListSize)
	}
	return b, nil
}

// Resolver looks up TXT records (net.Resolver satisfies it).
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// DNSTXT reads relay hints from TXT records of a name the circle controls.
type DNSTXT struct {
	Domain   string
	Resolver Resolver
}

func (d DNSTXT) Name() string { return "dns" }

func (d DNSTXT) Run(ctx context.Context, emit func(Found)) error {
	if d.Domain == "" {
		return ErrNotConfigured
	}
	txts, err := d.Resolver.LookupTXT(ctx, d.Domain)
	if err != nil {
		return fmt.Errorf("dns %s: %w", d.Domain, err)
	}
	n := 0
	for _, txt := range txts {
		v, ok := strings.CutPrefix(strings.TrimSpace(txt), "remora-relay=")
		if !ok {
			continue
		}
		addr, err := ma.NewMultiaddr(v)
		if err != nil {
			continue
		}
		info, err := peer.AddrInfoFromP2pAddr(addr)
		if err != nil {
			continue
		}
		emit(Found{Peer: info.ID, Addrs: info.Addrs, Relay: true})
		n++
	}
	if n == 0 {
		return fmt.Errorf("dns %s: no remora-relay= TXT record", d.Domain)
	}
	return nil
}
