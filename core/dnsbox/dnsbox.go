// Package dnsbox is the DNS TXT bootstrap box: members publish their sealed
// presence entries as TXT records of one name the circle controls, and read
// each other's from any resolver.
//
// # Records
//
// Every entry is one TXT record of the configured name, its character
// strings being
//
//	"remora1" ‖ board key ‖ base64 (RFC 4648, no padding) of the sealed
//	envelope, cut into strings of at most 255 bytes
//
// The board key is derived from the circle's epoch secret and the value is
// a sealed envelope of the circle (core/node), so the records say nothing to
// anyone outside it, and a record a stranger adds can only waste a read:
// nothing opens unless a member sealed it. Other TXT records at the name
// (an SPF policy, a verification token) are left alone.
//
// # Publishing
//
// Records are written with RFC 2136 dynamic updates signed with TSIG
// (RFC 8945), sent over TCP to the zone's primary: one update per publish,
// which deletes this node's previous records by their exact data and adds
// the new ones. Reads go over UDP with EDNS0 (4096 bytes) and fall back to
// TCP when the answer is truncated; an unchanged answer is reported as
// discovery.ErrNotModified.
package dnsbox

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/remora-p2p/remora/core/discovery"
)

// Options configure a Box.
type Options struct {
	// Name is the owner name of the TXT records ("_remora.example.org").
	Name string
	// Server is the resolver or authoritative server to read from
	// ("host:port"); default the first nameserver in /etc/resolv.conf.
	Server string
	// UpdateServer is the zone's primary that accepts RFC 2136 updates
	// ("host:port"); empty makes the box read-only.
	UpdateServer string
	// Zone is the zone to update (default: found by an SOA query of Name).
	Zone string
	// TSIGName, TSIGAlgorithm (default hmac-sha256) and TSIGSecret (base64)
	// sign the updates.
	TSIGName, TSIGAlgorithm, TSIGSecret string
	// TTL of the records written (default 60 s).
	TTL uint32
	// Timeout bounds one exchange (default 10 s).
	Timeout time.Duration
}

// Box is the DNS TXT box. It implements discovery.Board.
type Box struct {
	o Options

	mu      sync.Mutex
	lastGet [32]byte
	mine    map[string]bool // keys this node wrote
}

const (
	marker   = "remora1"
	maxChunk = 255
	// maxValue keeps one entry well under a 4096-byte EDNS answer.
	maxValue = 2048
)

var b64 = base64.RawStdEncoding

// New checks o and returns a Box.
func New(o Options) (*Box, error) {
	if o.Name == "" {
		return nil, errors.New("dnsbox: name is required (the DNS name whose TXT records hold the entries)")
	}
	o.Name = dns.Fqdn(o.Name)
	if _, ok := dns.IsDomainName(o.Name); !ok {
		return nil, fmt.Errorf("dnsbox: %q is not a domain name", o.Name)
	}
	if o.Server == "" {
		cfg, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil || len(cfg.Servers) == 0 {
			return nil, errors.New("dnsbox: no server given and none in /etc/resolv.conf: set [dns] server")
		}
		o.Server = net.JoinHostPort(cfg.Servers[0], cfg.Port)
	}
	if o.UpdateServer != "" {
		if o.TSIGName == "" || o.TSIGSecret == "" {
			return nil, errors.New("dnsbox: updates need a TSIG key: set [dns] tsig_name and the tsig_secret secret")
		}
		if _, err := base64.StdEncoding.DecodeString(o.TSIGSecret); err != nil {
			return nil, fmt.Errorf("dnsbox: the TSIG secret is not base64: %w", err)
		}
		o.TSIGName = dns.Fqdn(o.TSIGName)
		if o.TSIGAlgorithm == "" {
			o.TSIGAlgorithm = "hmac-sha256"
		}
		switch alg := dns.Fqdn(strings.ToLower(o.TSIGAlgorithm)); alg {
		case dns.HmacSHA256, dns.HmacSHA384, dns.HmacSHA512, dns.HmacSHA224:
			o.TSIGAlgorithm = alg
		default:
			return nil, fmt.Errorf("dnsbox: TSIG algorithm %q: use hmac-sha256, hmac-sha384 or hmac-sha512", o.TSIGAlgorithm)
		}
	}
	if o.Zone != "" {
		o.Zone = dns.Fqdn(o.Zone)
		if !dns.IsSubDomain(o.Zone, o.Name) {
			return nil, fmt.Errorf("dnsbox: %s is not in zone %s", o.Name, o.Zone)
		}
	}
	if o.TTL == 0 {
		o.TTL = 60
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	return &Box{o: o, mine: map[string]bool{}}, nil
}

// Name implements discovery.Board.
func (b *Box) Name() string { return "dns" }

// Domain is the DNS name whose TXT records the box reads.
func (b *Box) Domain() string { return strings.TrimSuffix(b.o.Name, ".") }

// MaxValue implements discovery.Board.
func (b *Box) MaxValue() int { return maxValue }

// Get implements discovery.Board.
func (b *Box) Get(ctx context.Context) (map[string][]byte, error) {
	rrs, err := b.lookup(ctx, b.o.Server)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	var all []string
	for _, rr := range rrs {
		all = append(all, strings.Join(rr.Txt, "\x00"))
		key, val, ok := parse(rr)
		if ok {
			out[key] = val
		}
	}
	slices.Sort(all)
	h := sha256.Sum256([]byte(strings.Join(all, "\x01")))
	b.mu.Lock()
	same := h == b.lastGet
	b.lastGet = h
	b.mu.Unlock()
	if same {
		return nil, discovery.ErrNotModified
	}
	return out, nil
}

func parse(rr *dns.TXT) (key string, val []byte, ok bool) {
	if len(rr.Txt) < 3 || rr.Txt[0] != marker || rr.Txt[1] == "" {
		return "", nil, false
	}
	v, err := b64.DecodeString(strings.Join(rr.Txt[2:], ""))
	if err != nil || len(v) == 0 || len(v) > maxValue {
		return "", nil, false
	}
	return rr.Txt[1], v, true
}

// record builds the TXT record of one entry.
func (b *Box) record(key string, val []byte) *dns.TXT {
	txt := []string{marker, key}
	enc := b64.EncodeToString(val)
	for len(enc) > 0 {
		n := min(maxChunk, len(enc))
		txt = append(txt, enc[:n])
		enc = enc[n:]
	}
	return &dns.TXT{Hdr: dns.RR_Header{Name: b.o.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: b.o.TTL}, Txt: txt}
}

// lookup asks server for the TXT records of the name: UDP with EDNS0,
// TCP when the answer was truncated.
func (b *Box) lookup(ctx context.Context, server string) ([]*dns.TXT, error) {
	m := new(dns.Msg)
	m.SetQuestion(b.o.Name, dns.TypeTXT)
	m.SetEdns0(4096, false)
	c := &dns.Client{Net: "udp", Timeout: b.o.Timeout}
	r, _, err := c.ExchangeContext(ctx, m, server)
	if err == nil && r.Truncated {
		c.Net = "tcp"
		r, _, err = c.ExchangeContext(ctx, m, server)
	}
	if err != nil {
		return nil, &discovery.BoxError{Err: fmt.Errorf("dns: TXT %s at %s: %w", b.o.Name, server, err),
			Fix: "check [dns] server in config.toml and that the server answers (e.g. `dig @SERVER " + b.o.Name + " TXT`)"}
	}
	switch r.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError: // no records yet is fine
	default:
		return nil, &discovery.BoxError{Err: fmt.Errorf("dns: TXT %s at %s: %s", b.o.Name, server, dns.RcodeToString[r.Rcode]),
			Fix: "the server refused the query: check [dns] name and server"}
	}
	var out []*dns.TXT
	for _, rr := range r.Answer {
		if t, ok := rr.(*dns.TXT); ok && strings.EqualFold(t.Hdr.Name, b.o.Name) {
			out = append(out, t)
		}
	}
	return out, nil
}

// zone returns the zone to update: configured, or the owner of the SOA
// the update server gives for the name.
func (b *Box) zone(ctx context.Context) (string, error) {
	if b.o.Zone != "" {
		return b.o.Zone, nil
	}
	m := new(dns.Msg)
	m.SetQuestion(b.o.Name, dns.TypeSOA)
	c := &dns.Client{Net: "tcp", Timeout: b.o.Timeout}
	r, _, err := c.ExchangeContext(ctx, m, b.o.UpdateServer)
	if err != nil {
		return "", fmt.Errorf("dns: find the zone of %s: %w", b.o.Name, err)
	}
	for _, rr := range append(r.Answer, r.Ns...) {
		if soa, ok := rr.(*dns.SOA); ok {
			return soa.Hdr.Name, nil
		}
	}
	return "", fmt.Errorf("dns: %s answered no SOA for %s: set [dns] zone", b.o.UpdateServer, b.o.Name)
}

// Put implements discovery.Board: one RFC 2136 update, TSIG-signed, that
// replaces this node's records.
func (b *Box) Put(ctx context.Context, entries map[string][]byte) error {
	if b.o.UpdateServer == "" {
		return discovery.ErrReadOnly
	}
	for k, v := range entries {
		if len(v) > maxValue {
			return fmt.Errorf("dns: entry %s is %d bytes, at most %d", k, len(v), maxValue)
		}
	}
	zone, err := b.zone(ctx)
	if err != nil {
		return &discovery.BoxError{Err: err, Fix: "check [dns] update_server and zone in config.toml"}
	}
	// Our previous records are deleted by their exact data, which is read
	// from the primary itself (it has every update already).
	cur, err := b.lookup(ctx, b.o.UpdateServer)
	if err != nil {
		return err
	}
	b.mu.Lock()
	stale := map[string]bool{}
	for k := range b.mine {
		stale[k] = true
	}
	b.mu.Unlock()
	var del []dns.RR
	for _, rr := range cur {
		if len(rr.Txt) >= 2 && rr.Txt[0] == marker {
			if _, ok := entries[rr.Txt[1]]; ok || stale[rr.Txt[1]] {
				del = append(del, rr)
			}
		}
	}
	var add []dns.RR
	keys := make([]string, 0, len(entries))
	for k := range entries {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		add = append(add, b.record(k, entries[k]))
	}
	m := new(dns.Msg)
	m.SetUpdate(zone)
	if len(del) > 0 {
		m.Remove(del)
	}
	m.Insert(add)
	m.SetTsig(b.o.TSIGName, b.o.TSIGAlgorithm, 300, time.Now().Unix())
	c := &dns.Client{Net: "tcp", Timeout: b.o.Timeout, TsigSecret: map[string]string{b.o.TSIGName: b.o.TSIGSecret}}
	r, _, err := c.ExchangeContext(ctx, m, b.o.UpdateServer)
	if err != nil {
		fix := "check [dns] update_server in config.toml and that it accepts TCP"
		if errors.Is(err, dns.ErrSig) || errors.Is(err, dns.ErrSecret) || errors.Is(err, dns.ErrKey) || errors.Is(err, dns.ErrAuth) || errors.Is(err, dns.ErrTime) {
			fix = "the server's answer failed the TSIG check: check [dns] tsig_name, tsig_algorithm and the tsig_secret"
		}
		return &discovery.BoxError{Err: fmt.Errorf("dns: update %s at %s: %w", zone, b.o.UpdateServer, err), Fix: fix}
	}
	if r.Rcode != dns.RcodeSuccess {
		fix := "see the DNS server's log"
		switch r.Rcode {
		case dns.RcodeRefused:
			fix = "the server refused the update: allow updates to the name with this TSIG key (update ACL or update-policy)"
		case dns.RcodeNotAuth:
			fix = "the server does not accept this TSIG key or is not authoritative for the zone: check [dns] tsig_name, tsig_secret and zone"
		case dns.RcodeNotZone:
			fix = "the name is not in the zone: check [dns] name and zone"
		}
		return &discovery.BoxError{Err: fmt.Errorf("dns: update %s at %s: %s", zone, b.o.UpdateServer, dns.RcodeToString[r.Rcode]), Fix: fix}
	}
	b.mu.Lock()
	b.mine = map[string]bool{}
	for k := range entries {
		b.mine[k] = true
	}
	b.mu.Unlock()
	return nil
}
