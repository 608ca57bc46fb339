// Package relaylist is the last bootstrap box: a preloaded, signed list of
// volunteer circuit relays, used only to reach members when every other
// box failed.
//
// # Keys (TUF-like delegation)
//
// An offline root key, whose public half is embedded in the binary
// (root.pub), signs a delegation: "this signing key may sign relay lists
// until T". CI holds only the short-lived signing key and re-signs the list
// on a schedule; a stolen signing key is worthless after its delegation
// expires, and the root never touches a networked machine.
//
//	delegation:  remora-relay-delegation v1
//	             key <minisign public key>
//	             expires <RFC 3339>
//
// # The list (CSV)
//
//	remora-relays v1,seq=<uint>,expires=<RFC 3339>,count=<rows>
//	peer,addrs,health
//	<peer ID>,<multiaddr> <multiaddr>...,<score in [0,1]>
//
// Rows are in the order nodes try them: healthiest first (see Build).
// Loading a list checks every row's shape; a row is decoded (peer ID,
// multiaddrs) when the node uses that relay ([List.Relay]), and the
// signing tools decode all rows before they sign ([List.DecodeAll]).
//
// # The bundle
//
// What nodes embed, fetch and store is one file holding the four parts,
// each "name length" on a line and then that many bytes, then "end":
//
//	remora-relay-bundle v1
//	delegation <n>        the delegation
//	delegation.minisig <n>  its minisign signature by the root key
//	relays.csv <n>        the list
//	relays.csv.minisig <n>  its minisign signature by the signing key
//	end
//
// `remora bootstrap export` writes the four files so that the minisign CLI
// can check them by hand (minisign -Vm delegation -P ROOT; minisign -Vm
// relays.csv -P KEY-FROM-DELEGATION).
//
// # Refusals
//
// Verify refuses, each with its own error: a truncated bundle, a
// delegation signed by another root, a bad signature (delegation or list),
// an expired delegation, an expired list, and a sequence lower than the
// highest accepted before (which the node persists, so a rollback is
// refused across restarts too).
package relaylist

import (
	"bufio"
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"aead.dev/minisign"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// Errors of Verify. Match with errors.Is.
var (
	ErrTruncated         = errors.New("relay list: the file is truncated or damaged: download it again")
	ErrForeignRoot       = errors.New("relay list: the delegation is signed by another root key than this build trusts")
	ErrBadSignature      = errors.New("relay list: signature does not verify")
	ErrDelegationExpired = errors.New("relay list: the signing key's delegation expired: get a list signed under a current delegation")
	ErrListExpired       = errors.New("relay list: the list expired: fetch a newer one")
	ErrRollback          = errors.New("relay list: older than a list accepted before (rollback refused)")
	ErrFormat            = errors.New("relay list: malformed")
)

// MaxBundle bounds a bundle (a 100,000-relay list is about 12 MB).
const MaxBundle = 64 << 20

// Relay is one volunteer relay.
type Relay struct {
	Peer   peer.ID
	Addrs  []ma.Multiaddr
	Health float64
}

// List is a verified list.
type List struct {
	Seq     uint64
	Expires time.Time
	// SigningKey and Delegated say which key signed it, delegated until when.
	SigningKey minisign.PublicKey
	Delegated  time.Time
	// Relays are the decoded relays of a list built in memory or after
	// DecodeAll; a parsed list decodes a row when asked (Relay, Len).
	Relays []Relay
	rows   [][]byte
}

// Bundle is the four parts.
type Bundle struct {
	Delegation, DelegationSig, List, ListSig []byte
}

var sectionNames = []string{"delegation", "delegation.minisig", "relays.csv", "relays.csv.minisig"}

func (b *Bundle) parts() []*[]byte {
	return []*[]byte{&b.Delegation, &b.DelegationSig, &b.List, &b.ListSig}
}

// Marshal writes the bundle.
func (b *Bundle) Marshal() []byte {
	var buf bytes.Buffer
	buf.WriteString("remora-relay-bundle v1\n")
	for i, p := range b.parts() {
		fmt.Fprintf(&buf, "%s %d\n", sectionNames[i], len(*p))
		buf.Write(*p)
		buf.WriteByte('\n')
	}
	buf.WriteString("end\n")
	return buf.Bytes()
}

// ParseBundle splits a bundle; a cut or damaged one is ErrTruncated.
func ParseBundle(data []byte) (*Bundle, error) {
	if len(data) > MaxBundle {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrFormat, len(data), MaxBundle)
	}
	r := bufio.NewReader(bytes.NewReader(data))
	head, err := r.ReadString('\n')
	if err != nil || head != "remora-relay-bundle v1\n" {
		if len(data) < len("remora-relay-bundle v1\n") && strings.HasPrefix("remora-relay-bundle v1\n", string(data)) {
			return nil, ErrTruncated
		}
		return nil, fmt.Errorf("%w: not a relay list bundle (first line %q)", ErrFormat, strings.TrimSpace(firstLine(data)))
	}
	b := &Bundle{}
	for i, p := range b.parts() {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("%w (section %s missing)", ErrTruncated, sectionNames[i])
		}
		name, n, ok := strings.Cut(strings.TrimSpace(line), " ")
		size, perr := strconv.Atoi(n)
		if !ok || name != sectionNames[i] || perr != nil || size < 0 || size > MaxBundle {
			return nil, fmt.Errorf("%w: section %d: want %q and a length, got %q", ErrFormat, i+1, sectionNames[i], strings.TrimSpace(line))
		}
		*p = make([]byte, size)
		if _, err := io.ReadFull(r, *p); err != nil {
			return nil, fmt.Errorf("%w (section %s is cut short)", ErrTruncated, sectionNames[i])
		}
		if c, err := r.ReadByte(); err != nil || c != '\n' {
			return nil, fmt.Errorf("%w (after section %s)", ErrTruncated, sectionNames[i])
		}
	}
	end, err := r.ReadString('\n')
	if err != nil || end != "end\n" {
		return nil, fmt.Errorf("%w (no end line)", ErrTruncated)
	}
	return b, nil
}

func firstLine(b []byte) string {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	if len(b) > 40 {
		b = b[:40]
	}
	return string(b)
}

// KeyString is a public key's one-line (base64) form, as root.pub and
// config.toml's [relay_list] root_key hold it.
func KeyString(k minisign.PublicKey) string {
	b, _ := k.MarshalText()
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// Delegation is a parsed delegation.
type Delegation struct {
	Key     minisign.PublicKey
	Expires time.Time
}

// MarshalDelegation writes a delegation's text (to be signed by the root).
func MarshalDelegation(key minisign.PublicKey, expires time.Time) []byte {
	return fmt.Appendf(nil, "remora-relay-delegation v1\nkey %s\nexpires %s\n", KeyString(key), expires.UTC().Format(time.RFC3339))
}

func parseDelegation(b []byte) (*Delegation, error) {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 3 || lines[0] != "remora-relay-delegation v1" {
		return nil, fmt.Errorf("%w: delegation: want 3 lines starting \"remora-relay-delegation v1\"", ErrFormat)
	}
	k, ok1 := strings.CutPrefix(lines[1], "key ")
	e, ok2 := strings.CutPrefix(lines[2], "expires ")
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("%w: delegation: want \"key\" and \"expires\" lines", ErrFormat)
	}
	d := &Delegation{}
	if err := d.Key.UnmarshalText([]byte(k)); err != nil {
		return nil, fmt.Errorf("%w: delegation key: %v", ErrFormat, err)
	}
	t, err := time.Parse(time.RFC3339, e)
	if err != nil {
		return nil, fmt.Errorf("%w: delegation expiry: %v", ErrFormat, err)
	}
	d.Expires = t
	return d, nil
}

// sigKeyID returns the key ID a minisign signature names.
func sigKeyID(sig []byte) (uint64, bool) {
	var s minisign.Signature
	if err := s.UnmarshalText(sig); err != nil {
		return 0, false
	}
	return s.KeyID, true
}

// Verify checks a bundle against the trusted roots at now and refuses a
// sequence below minSeq; see the package comment for the refusals.
func Verify(data []byte, roots []minisign.PublicKey, now time.Time, minSeq uint64) (*List, error) {
	b, err := ParseBundle(data)
	if err != nil {
		return nil, err
	}
	id, ok := sigKeyID(b.DelegationSig)
	if !ok {
		return nil, fmt.Errorf("%w: the delegation's signature does not parse", ErrBadSignature)
	}
	var root *minisign.PublicKey
	for i := range roots {
		if roots[i].ID() == id {
			root = &roots[i]
		}
	}
	if root == nil {
		return nil, fmt.Errorf("%w (signed by key %X)", ErrForeignRoot, id)
	}
	if !minisign.Verify(*root, b.Delegation, b.DelegationSig) {
		return nil, fmt.Errorf("%w: the delegation", ErrBadSignature)
	}
	d, err := parseDelegation(b.Delegation)
	if err != nil {
		return nil, err
	}
	if !d.Expires.After(now) {
		return nil, fmt.Errorf("%w (on %s)", ErrDelegationExpired, d.Expires.Format(time.DateOnly))
	}
	if !minisign.Verify(d.Key, b.List, b.ListSig) {
		return nil, fmt.Errorf("%w: the list (not signed by the delegated key)", ErrBadSignature)
	}
	l, err := ParseCSV(b.List)
	if err != nil {
		return nil, err
	}
	if !l.Expires.After(now) {
		return nil, fmt.Errorf("%w (on %s)", ErrListExpired, l.Expires.Format(time.DateOnly))
	}
	if l.Seq < minSeq {
		return nil, fmt.Errorf("%w: sequence %d, but %d was accepted before", ErrRollback, l.Seq, minSeq)
	}
	l.SigningKey, l.Delegated = d.Key, d.Expires
	return l, nil
}

// ParseCSV parses a list (no signature check).
func ParseCSV(data []byte) (*List, error) {
	head, rest, _ := bytes.Cut(data, []byte("\n"))
	f := strings.Split(strings.TrimSpace(string(head)), ",")
	if len(f) != 4 || f[0] != "remora-relays v1" || !strings.HasPrefix(f[1], "seq=") ||
		!strings.HasPrefix(f[2], "expires=") || !strings.HasPrefix(f[3], "count=") {
		return nil, fmt.Errorf("%w: first line: want \"remora-relays v1,seq=N,expires=TIME,count=N\"", ErrFormat)
	}
	l := &List{}
	var err error
	if l.Seq, err = strconv.ParseUint(f[1][4:], 10, 64); err != nil {
		return nil, fmt.Errorf("%w: seq: %v", ErrFormat, err)
	}
	if l.Expires, err = time.Parse(time.RFC3339, f[2][8:]); err != nil {
		return nil, fmt.Errorf("%w: expires: %v", ErrFormat, err)
	}
	count, err := strconv.Atoi(f[3][6:])
	if err != nil || count < 0 {
		return nil, fmt.Errorf("%w: count: %v", ErrFormat, err)
	}
	hdr, rest, _ := bytes.Cut(rest, []byte("\n"))
	if strings.TrimSpace(string(hdr)) != "peer,addrs,health" {
		return nil, fmt.Errorf("%w: second line: want \"peer,addrs,health\"", ErrFormat)
	}
	rows := bytes.Split(bytes.TrimRight(rest, "\n"), []byte("\n"))
	if len(rest) == 0 {
		rows = nil
	}
	if len(rows) != count {
		return nil, fmt.Errorf("%w: %d relays, the header says %d", ErrTruncated, len(rows), count)
	}
	// Loading checks every row's shape; decoding a row (base58 peer ID,
	// multiaddrs) waits until the node uses that relay, since decoding
	// 100,000 peer IDs was most of loading a list and a node uses a few.
	for i, row := range rows {
		if err := checkRow(row); err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrFormat, i+3, err)
		}
	}
	l.rows = rows
	return l, nil
}

// Len is the number of relays in the list.
func (l *List) Len() int {
	if l.rows != nil {
		return len(l.rows)
	}
	return len(l.Relays)
}

// Relay decodes the i-th relay (healthiest first). A row that passed the
// load-time check but does not decode is an error for that row only.
func (l *List) Relay(i int) (Relay, error) {
	if l.rows == nil {
		return l.Relays[i], nil
	}
	r, err := parseRow(l.rows[i])
	if err != nil {
		return Relay{}, fmt.Errorf("%w: line %d: %v", ErrFormat, i+3, err)
	}
	return r, nil
}

// DecodeAll decodes every row into Relays (the signing tools check a whole
// list this way before they sign it), one piece per core.
func (l *List) DecodeAll() error {
	if l.rows == nil {
		return nil
	}
	count := len(l.rows)
	relays := make([]Relay, count)
	workers := min(runtime.GOMAXPROCS(0), max(1, count/4096))
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := w*count/workers, (w+1)*count/workers
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				r, err := l.Relay(i)
				if err != nil {
					errs[w] = err
					return
				}
				relays[i] = r
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	l.Relays, l.rows = relays, nil
	return nil
}

// checkRow is the load-time check of a row's shape: a base58 peer ID,
// addresses that look like multiaddrs, a health in [0,1].
func checkRow(row []byte) error {
	p, rest, ok1 := bytes.Cut(row, []byte(","))
	addrs, health, ok2 := bytes.Cut(rest, []byte(","))
	if !ok1 || !ok2 {
		return errors.New("want peer,addrs,health")
	}
	if len(p) == 0 || len(p) > 128 {
		return fmt.Errorf("peer %q: want a peer ID", p)
	}
	for _, c := range p {
		if c >= 0x80 || !base58[c] {
			return fmt.Errorf("peer %q: not base58", p)
		}
	}
	n := 0
	for a := range bytes.FieldsSeq(addrs) {
		if a[0] != '/' {
			return fmt.Errorf("address %q: want a multiaddr", a)
		}
		n++
	}
	if n == 0 {
		return errors.New("no address")
	}
	if h, err := strconv.ParseFloat(string(bytes.TrimSpace(health)), 64); err != nil || !(h >= 0 && h <= 1) {
		return fmt.Errorf("health %q: want a number in [0,1]", health)
	}
	return nil
}

var base58 = func() (t [128]bool) {
	for _, c := range "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz" {
		t[c] = true
	}
	return t
}()

// parseRow decodes a row that passed checkRow: its shape, the address
// count and the health are known good; the peer ID and the multiaddrs may
// still not decode.
func parseRow(row []byte) (Relay, error) {
	p, rest, _ := bytes.Cut(row, []byte(","))
	addrs, health, _ := bytes.Cut(rest, []byte(","))
	var r Relay
	var err error
	if r.Peer, err = peer.Decode(string(p)); err != nil {
		return Relay{}, fmt.Errorf("peer: %v", err)
	}
	for a := range strings.FieldsSeq(string(addrs)) {
		m, err := ma.NewMultiaddr(a)
		if err != nil {
			return Relay{}, fmt.Errorf("address %q: %v", a, err)
		}
		r.Addrs = append(r.Addrs, m)
	}
	r.Health, _ = strconv.ParseFloat(string(bytes.TrimSpace(health)), 64)
	return r, nil
}

// MarshalCSV writes a list: a parsed list's rows as they were, then any
// relays in Relays.
func MarshalCSV(l *List) []byte {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "remora-relays v1,seq=%d,expires=%s,count=%d\npeer,addrs,health\n", l.Seq, l.Expires.UTC().Format(time.RFC3339), len(l.rows)+len(l.Relays))
	for _, row := range l.rows {
		buf.Write(row)
		buf.WriteByte('\n')
	}
	for _, r := range l.Relays {
		buf.WriteString(r.Peer.String())
		buf.WriteByte(',')
		for i, a := range r.Addrs {
			if i > 0 {
				buf.WriteByte(' ')
			}
			buf.WriteString(a.String())
		}
		fmt.Fprintf(&buf, ",%.3f\n", r.Health)
	}
	return buf.Bytes()
}

// Sign makes a bundle: the list signed by the signing key, with the
// delegation (and its root signature) that vouches for that key.
func Sign(l *List, signing minisign.PrivateKey, delegation, delegationSig []byte) []byte {
	csv := MarshalCSV(l)
	b := Bundle{Delegation: delegation, DelegationSig: delegationSig, List: csv, ListSig: minisign.Sign(signing, csv)}
	return b.Marshal()
}

// Delegate makes a delegation of signing to the root key's holder.
func Delegate(root minisign.PrivateKey, signing minisign.PublicKey, expires time.Time) (delegation, sig []byte) {
	d := MarshalDelegation(signing, expires)
	return d, minisign.Sign(root, d)
}

//go:embed root.pub
var rootPub string

//go:embed relays.bundle
var embedded []byte

// Roots returns the root keys this build trusts (root.pub).
func Roots() ([]minisign.PublicKey, error) {
	var out []minisign.PublicKey
	for line := range strings.SplitSeq(rootPub, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "untrusted comment:") || strings.HasPrefix(line, "#") {
			continue
		}
		var k minisign.PublicKey
		if err := k.UnmarshalText([]byte(line)); err != nil {
			return nil, fmt.Errorf("relay list: embedded root key: %w", err)
		}
		out = append(out, k)
	}
	if len(out) == 0 {
		return nil, errors.New("relay list: no embedded root key")
	}
	return out, nil
}

// Embedded returns the bundle built into the binary.
func Embedded() []byte { return embedded }
