package circle

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/hpke"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/mdp/qrterminal/v3"

	"github.com/remora-p2p/remora/core/identity"
)

// MaxInviteTTL is the longest an invite may live.
const MaxInviteTTL = 24 * time.Hour

// InvitePrefix starts every invite's text form.
const InvitePrefix = "remora1"

// Invite errors. Each says what the user can do.
var (
	ErrInviteMalformed = errors.New("invite: the invite text is mistyped or truncated; copy it again in full (it starts with " + InvitePrefix + ") or scan the QR code")
	ErrInviteExpired   = errors.New("invite: the invite has expired; ask the inviter for a new one (invites last at most 24 hours)")
	ErrInviteUsed      = errors.New("invite: the invite was already used by another device; each invite admits one device, ask for a new one")
	ErrInviteInvalid   = errors.New("invite: the join request does not match any open invite of this circle (wrong or revoked invite, or a forged request); ask the inviter for a new invite")
	ErrWelcomeInvalid  = errors.New("invite: the welcome message could not be opened or verified; it was not sent by the inviter for this join, ask for a new invite")
	ErrInviteDenied    = errors.New("invite: an admin of the circle denied this join request, and the invite can no longer be used; if that was a mistake, ask for a new invite")
	ErrInviteVoid      = errors.New("invite: the device that made this invite is no longer an admin of the circle, so its invites are void; ask an admin for a new invite")
)

// joinSkew is how far a join request's own time may lie outside its
// invite's lifetime and ahead of the inviter's clock.
const joinSkew = 10 * time.Minute

// Token is an invite's single-use 128-bit secret.
type Token [16]byte

// TokenID names an invite without revealing its token: the first 8 bytes of
// SHA-256("remora/v1/invite-id" ‖ token).
type TokenID [8]byte

func (t TokenID) String() string { return hex.EncodeToString(t[:]) }

// ID returns the token's ID.
func (t Token) ID() TokenID {
	s := sha256.Sum256(append([]byte("remora/v1/invite-id"), t[:]...))
	return TokenID(s[:8])
}

// Invite is what the inviter hands to the joiner out of band: never a circle
// key, only what the joiner needs to reach the inviter once.
type Invite struct {
	Token   Token
	Expires time.Time
	Inviter peer.ID
	BoxKey  *ecdh.PublicKey // the inviter's current X25519 box prekey
	Hint    string          // one rendezvous hint: a channel description without credentials
}

const (
	inviteVersion = 1
	maxHintLen    = 256
)

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

func inviteChecksum(payload []byte) []byte {
	s := sha256.Sum256(append([]byte("remora/v1/invite-text"), payload...))
	return s[:4]
}

// String is the text form: "remora1" followed by lowercase base32 of
// version ‖ token (16) ‖ expires (8, Unix seconds) ‖ box key (32) ‖
// uvarint len ‖ inviter peer ID ‖ uvarint len ‖ hint ‖ checksum (4 bytes of
// SHA-256("remora/v1/invite-text" ‖ everything before)).
func (i Invite) String() string {
	p := []byte{inviteVersion}
	p = append(p, i.Token[:]...)
	p = binary.BigEndian.AppendUint64(p, uint64(i.Expires.Unix()))
	p = append(p, i.BoxKey.Bytes()...)
	p = binary.AppendUvarint(p, uint64(len(i.Inviter)))
	p = append(p, i.Inviter...)
	p = binary.AppendUvarint(p, uint64(len(i.Hint)))
	p = append(p, i.Hint...)
	p = append(p, inviteChecksum(p)...)
	return InvitePrefix + strings.ToLower(b32.EncodeToString(p))
}

// QR writes the invite as a terminal QR code (half blocks).
func (i Invite) QR(w io.Writer) {
	// Upper case lets the QR code use its denser alphanumeric mode;
	// ParseInvite ignores case.
	qrterminal.GenerateHalfBlock(strings.ToUpper(i.String()), qrterminal.L, w)
}

// ParseInvite decodes an invite's text form. Case and surrounding or
// embedded whitespace are ignored. A mistyped or truncated invite gives
// ErrInviteMalformed. It does not check expiry (RequestJoin does).
func ParseInvite(s string) (Invite, error) {
	s = strings.Join(strings.Fields(s), "")
	s = strings.ToLower(s)
	if !strings.HasPrefix(s, InvitePrefix) {
		return Invite{}, fmt.Errorf("%w (no %q prefix)", ErrInviteMalformed, InvitePrefix)
	}
	p, err := b32.DecodeString(strings.ToUpper(s[len(InvitePrefix):]))
	if err != nil || len(p) < 1+16+8+32+2+4 {
		return Invite{}, fmt.Errorf("%w (bad characters or too short)", ErrInviteMalformed)
	}
	body, sum := p[:len(p)-4], p[len(p)-4:]
	if !hmac.Equal(sum, inviteChecksum(body)) {
		return Invite{}, fmt.Errorf("%w (checksum mismatch)", ErrInviteMalformed)
	}
	if body[0] != inviteVersion {
		return Invite{}, fmt.Errorf("invite: version %d is not supported by this remora; update remora", body[0])
	}
	var inv Invite
	copy(inv.Token[:], body[1:17])
	exp := binary.BigEndian.Uint64(body[17:25])
	if exp > 1<<40 {
		return Invite{}, fmt.Errorf("%w (expiry out of range)", ErrInviteMalformed)
	}
	inv.Expires = time.Unix(int64(exp), 0).UTC()
	if inv.BoxKey, err = ecdh.X25519().NewPublicKey(body[25:57]); err != nil {
		return Invite{}, fmt.Errorf("%w (box key)", ErrInviteMalformed)
	}
	rest := body[57:]
	pid, rest, ok := lenPrefixed(rest)
	if !ok {
		return Invite{}, fmt.Errorf("%w (peer ID)", ErrInviteMalformed)
	}
	if inv.Inviter, err = peer.IDFromBytes(pid); err != nil {
		return Invite{}, fmt.Errorf("%w (peer ID: %v)", ErrInviteMalformed, err)
	}
	if _, err := identity.PublicKeyOf(inv.Inviter); err != nil {
		return Invite{}, fmt.Errorf("%w (peer ID is not ed25519)", ErrInviteMalformed)
	}
	hint, rest, ok := lenPrefixed(rest)
	if !ok || len(rest) != 0 || len(hint) > maxHintLen || !utf8.Valid(hint) {
		return Invite{}, fmt.Errorf("%w (hint)", ErrInviteMalformed)
	}
	inv.Hint = string(hint)
	return inv, nil
}

func lenPrefixed(b []byte) (v, rest []byte, ok bool) {
	l, n := binary.Uvarint(b)
	if n <= 0 || l > uint64(len(b)-n) {
		return nil, nil, false
	}
	return b[n : n+int(l)], b[n+int(l):], true
}

// inviteRecord is the inviter's memory of an invite: open, with requests
// pending approval, used (approved for one device), or denied.
type inviteRecord struct {
	Token    Token
	Created  time.Time
	Expires  time.Time
	Box      []byte // the inviter's box key the invite named (for the safety code)
	InPerson bool   // its single use is approved in advance
	UsedBy   peer.ID
	Denied   bool
	Pending  []*pendingRecord
}

// pendingRecord is an authentic join request waiting for an admin.
type pendingRecord struct {
	Joiner   peer.ID
	Prekey   identity.Prekey
	Name     string
	Time     time.Time // the request's own time
	Received time.Time
	Channel  string // where it arrived, and where the answer goes
}

type inviteJSON struct {
	Token    []byte        `json:"token"`
	Created  time.Time     `json:"created,omitzero"`
	Expires  time.Time     `json:"expires"`
	Box      []byte        `json:"box,omitempty"`
	InPerson bool          `json:"in_person,omitempty"`
	UsedBy   peer.ID       `json:"used_by,omitempty"`
	Denied   bool          `json:"denied,omitempty"`
	Pending  []pendingJSON `json:"pending,omitempty"`
}

type pendingJSON struct {
	Joiner   peer.ID   `json:"joiner"`
	Prekey   []byte    `json:"prekey"`
	Name     string    `json:"name"`
	Time     time.Time `json:"time"`
	Received time.Time `json:"received"`
	Channel  string    `json:"channel,omitempty"`
}

func (r *inviteRecord) json() inviteJSON {
	j := inviteJSON{Token: r.Token[:], Created: r.Created, Expires: r.Expires, Box: r.Box, InPerson: r.InPerson, UsedBy: r.UsedBy, Denied: r.Denied}
	for _, p := range r.Pending {
		j.Pending = append(j.Pending, pendingJSON{Joiner: p.Joiner, Prekey: p.Prekey.Marshal(), Name: p.Name, Time: p.Time, Received: p.Received, Channel: p.Channel})
	}
	return j
}

func (j inviteJSON) record() (*inviteRecord, error) {
	r := &inviteRecord{Created: j.Created, Expires: j.Expires, Box: j.Box, InPerson: j.InPerson, UsedBy: j.UsedBy, Denied: j.Denied}
	copy(r.Token[:], j.Token)
	if r.Created.IsZero() {
		r.Created = r.Expires.Add(-MaxInviteTTL) // stored before the field existed
	}
	for _, pj := range j.Pending {
		pk, err := identity.ParsePrekey(pj.Prekey)
		if err != nil {
			return nil, fmt.Errorf("pending request of %s: %w", pj.Joiner, err)
		}
		r.Pending = append(r.Pending, &pendingRecord{Joiner: pj.Joiner, Prekey: pk, Name: pj.Name, Time: pj.Time, Received: pj.Received, Channel: pj.Channel})
	}
	return r, nil
}

// pendingOf returns the joiner's pending request, if any.
func (r *inviteRecord) pendingOf(p peer.ID) *pendingRecord {
	for _, pr := range r.Pending {
		if pr.Joiner == p {
			return pr
		}
	}
	return nil
}

// InviteOptions configure [Circle.Invite].
type InviteOptions struct {
	Hint string        // one rendezvous hint: a channel description without credentials
	TTL  time.Duration // at most MaxInviteTTL
	// InPerson approves the invite's single use in advance: the first
	// authentic request is welcomed without an admin's approval. Only for
	// an invite handed over face to face (QR code), never one sent through
	// a service that someone else runs.
	InPerson bool
}

// NewInvite makes a single-use invite valid for ttl (at most MaxInviteTTL)
// with one rendezvous hint, whose use an admin must approve: see [Circle.Invite].
func (c *Circle) NewInvite(hint string, ttl time.Duration) (Invite, error) {
	return c.Invite(InviteOptions{Hint: hint, TTL: ttl})
}

// Invite makes a single-use invite. Only admins invite: an admin approves
// the request and signs the new member's addition, and a member's invite
// could not be answered. Persist State afterwards: the token must survive a
// restart to be usable, and its use must be remembered.
func (c *Circle) Invite(o InviteOptions) (Invite, error) {
	hint, ttl := o.Hint, o.TTL
	if ttl <= 0 || ttl > MaxInviteTTL {
		return Invite{}, fmt.Errorf("invite: lifetime %s out of range (0, %s]", ttl, MaxInviteTTL)
	}
	if len(hint) > maxHintLen || !utf8.ValidString(hint) {
		return Invite{}, fmt.Errorf("invite: hint longer than %d bytes or not UTF-8", maxHintLen)
	}
	if strings.Contains(hint, "@") && strings.Contains(hint, ":") && strings.Contains(hint, "//") {
		// user:password@host in a URL: never put credentials in an invite.
		if at, sl := strings.Index(hint, "@"), strings.Index(hint, "//"); at > sl && strings.Contains(hint[sl:at], ":") {
			return Invite{}, errors.New("invite: the hint looks like a URL with credentials (user:password@); give the address only")
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.log.Roster()
	if !r.IsMember(c.Self()) {
		return Invite{}, fmt.Errorf("invite: %w: this device is not in the roster", ErrNotMember)
	}
	if !r.IsAdmin(c.Self()) {
		return Invite{}, fmt.Errorf("invite: %w: only admins invite (an admin approves each join and signs the addition); ask %s to run `remora invite`",
			ErrUnauthorized, adminNames(r))
	}
	var t Token
	if _, err := io.ReadFull(c.opts.Rand, t[:]); err != nil {
		return Invite{}, fmt.Errorf("invite: %w", err)
	}
	now := c.opts.Now()
	box := c.keys.Current().Public
	inv := Invite{Token: t, Expires: now.Add(ttl).Truncate(time.Second).UTC(), Inviter: c.Self(), BoxKey: box, Hint: hint}
	c.invites[t.ID()] = &inviteRecord{Token: t, Created: now, Expires: inv.Expires, Box: box.Bytes(), InPerson: o.InPerson}
	return inv, nil
}

// hpke suite for join messages: DHKEM(X25519) + HKDF-SHA256 + ChaCha20-Poly1305.
func hpkeSeal(pub *ecdh.PublicKey, info, msg []byte) ([]byte, error) {
	pk, err := hpke.NewDHKEMPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return hpke.Seal(pk, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), info, msg)
}

func hpkeOpen(priv *ecdh.PrivateKey, info, ct []byte) ([]byte, error) {
	sk, err := hpke.NewDHKEMPrivateKey(priv)
	if err != nil {
		return nil, err
	}
	return hpke.Open(sk, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), info, ct)
}

func joinInfo(label string, key *ecdh.PublicKey) []byte {
	id := identity.KeyIDOf(key)
	return append([]byte(label), id[:]...)
}

func mac(t Token, label string, msg []byte) []byte {
	m := hmac.New(sha256.New, t[:])
	m.Write([]byte(label))
	m.Write(msg)
	return m.Sum(nil)
}

// Fingerprint is the short code both sides compare (read aloud or side by
// side) to confirm that the join was not intercepted: twelve digits from
// SHA-256("remora/v1/fingerprint" ‖ token ‖ inviter ‖ inviter box key ‖
// joiner ‖ joiner box key).
func Fingerprint(t Token, inviter peer.ID, inviterBox *ecdh.PublicKey, joiner peer.ID, joinerBox *ecdh.PublicKey) string {
	h := sha256.New()
	h.Write([]byte("remora/v1/fingerprint"))
	h.Write(t[:])
	for _, b := range [][]byte{[]byte(inviter), inviterBox.Bytes(), []byte(joiner), joinerBox.Bytes()} {
		h.Write(binary.AppendUvarint(nil, uint64(len(b))))
		h.Write(b)
	}
	n := binary.BigEndian.Uint64(h.Sum(nil)) % 1_000_000_000_000
	s := fmt.Sprintf("%012d", n)
	return s[0:3] + " " + s[3:6] + " " + s[6:9] + " " + s[9:12]
}

// JoinRequest is what a joiner sends to the inviter, sealed.
type JoinRequest struct {
	TokenID TokenID
	Time    time.Time
	Joiner  peer.ID
	Prekey  identity.Prekey
	Name    string
	// Channel is where the request arrived; the answer goes there.
	Channel string
	// Resend marks a repeated request from the device this invite already
	// admitted, still a member with the same box key: its welcome may have
	// been lost, so it is sent again. It never readmits a removed device.
	Resend bool

	token Token // set once matched
}

// Fingerprint returns the code the inviter compares with the joiner's.
func (r *JoinRequest) Fingerprint(inviter peer.ID, inviterBox *ecdh.PublicKey) string {
	return Fingerprint(r.token, inviter, inviterBox, r.Joiner, r.Prekey.Public)
}

// PendingJoin is the joiner's state between its request and the welcome.
type PendingJoin struct {
	Invite Invite
	self   peer.ID
	prekey identity.Prekey
}

// Fingerprint returns the code the joiner compares with the inviter's.
func (p *PendingJoin) Fingerprint() string {
	return Fingerprint(p.Invite.Token, p.Invite.Inviter, p.Invite.BoxKey, p.self, p.prekey.Public)
}

// RequestJoin builds the join request for an invite: signed by the joiner,
// MACed with the invite token and sealed (HPKE) to the inviter's box key,
// info "remora/v1/join-request" ‖ box key ID. Send the result to the
// inviter (the hint says where); keep the PendingJoin for the welcome.
func RequestJoin(k *identity.Keyring, inv Invite, displayName string, now time.Time) ([]byte, *PendingJoin, error) {
	if !now.Before(inv.Expires) {
		return nil, nil, fmt.Errorf("%w (expired %s)", ErrInviteExpired, inv.Expires.Format(time.RFC3339))
	}
	if inv.Expires.Sub(now) > MaxInviteTTL+5*time.Minute {
		return nil, nil, fmt.Errorf("%w (expiry more than 24 hours ahead)", ErrInviteMalformed)
	}
	if displayName == "" || len(displayName) > MaxNameLen || !utf8.ValidString(displayName) || strings.IndexFunc(displayName, unicode.IsControl) >= 0 {
		return nil, nil, fmt.Errorf("invite: display name must be 1 to %d bytes of UTF-8 without control characters", MaxNameLen)
	}
	self := k.Identity()
	pre := k.Current()
	b := []byte{inviteVersion}
	tid := inv.Token.ID()
	b = append(b, tid[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(now.UnixMilli()))
	b = binary.AppendUvarint(b, uint64(len(self.PeerID())))
	b = append(b, self.PeerID()...)
	b = append(b, pre.Marshal()...)
	b = binary.AppendUvarint(b, uint64(len(displayName)))
	b = append(b, displayName...)
	b = append(b, self.Sign(append([]byte("remora/v1/join-request"), b...))...)
	b = append(b, mac(inv.Token, "remora/v1/join-mac", b)...)
	sealed, err := hpkeSeal(inv.BoxKey, joinInfo("remora/v1/join-request", inv.BoxKey), b)
	if err != nil {
		return nil, nil, fmt.Errorf("invite: seal join request: %w", err)
	}
	return sealed, &PendingJoin{Invite: inv, self: self.PeerID(), prekey: pre}, nil
}

// OpenJoin opens a join request sealed to one of this device's box keys and
// checks it against the invites: unknown, forged or outside its invite's
// lifetime → ErrInviteInvalid; expired → ErrInviteExpired; approved for
// another device, or for a device no longer in the roster → ErrInviteUsed;
// denied → ErrInviteDenied; made while this device was an admin that it no
// longer is → ErrInviteVoid. On those four the authentic request is returned
// with the error, so [Refuse] can answer it. A request that passes is not
// admitted: [Circle.HoldJoin] holds it for an admin's approval. OpenJoin
// changes nothing.
func (c *Circle) OpenJoin(sealed []byte) (*JoinRequest, error) {
	var plain []byte
	for _, bk := range c.keys.BoxKeys() {
		p, err := hpkeOpen(bk.Private, joinInfo("remora/v1/join-request", bk.Public), sealed)
		if err == nil {
			plain = p
			break
		}
	}
	if plain == nil {
		return nil, fmt.Errorf("%w (cannot open: not sealed to this device)", ErrInviteInvalid)
	}
	req, signed, sig, tag, err := parseJoinRequest(plain)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	rec, ok := c.invites[req.TokenID]
	if !ok {
		return nil, fmt.Errorf("%w (no such invite)", ErrInviteInvalid)
	}
	if !hmac.Equal(tag, mac(rec.Token, "remora/v1/join-mac", plain[:len(plain)-32])) {
		return nil, fmt.Errorf("%w (MAC mismatch)", ErrInviteInvalid)
	}
	if err := identity.Verify(req.Joiner, append([]byte("remora/v1/join-request"), signed...), sig); err != nil {
		return nil, fmt.Errorf("%w (joiner signature)", ErrInviteInvalid)
	}
	if err := req.Prekey.Verify(req.Joiner); err != nil {
		return nil, fmt.Errorf("%w (joiner box key)", ErrInviteInvalid)
	}
	// A request is bound to its invite's lifetime and to its own time: one
	// made outside it, or dated ahead of our clock, is not one the joiner
	// made for this invite.
	now := c.opts.Now()
	if req.Time.Before(rec.Created.Add(-joinSkew)) || req.Time.After(rec.Expires.Add(joinSkew)) || req.Time.After(now.Add(joinSkew)) {
		return nil, fmt.Errorf("%w (request dated %s, outside the invite's lifetime)", ErrInviteInvalid, req.Time.Format(time.RFC3339))
	}
	req.token = rec.Token
	r := c.log.Roster()
	switch {
	case !r.IsAdmin(c.Self()):
		return req, ErrInviteVoid
	case rec.Denied:
		return req, ErrInviteDenied
	case rec.UsedBy != "":
		// Only the admitted device, still a member with the same box key,
		// gets its welcome again; a replay after its removal readmits nobody.
		if m, ok := r.Member(req.Joiner); ok && rec.UsedBy == req.Joiner && m.Prekey.Public.Equal(req.Prekey.Public) {
			req.Resend = true
			return req, nil
		}
		return req, ErrInviteUsed
	case rec.pendingOf(req.Joiner) != nil:
		return req, nil // asked again while waiting (its join was restarted)
	case !now.Before(rec.Expires):
		return req, ErrInviteExpired
	}
	return req, nil
}

func parseJoinRequest(b []byte) (req *JoinRequest, signed, sig, tag []byte, err error) {
	bad := fmt.Errorf("%w (malformed join request)", ErrInviteInvalid)
	if len(b) < 1+8+8+1+identity.PrekeySize+1+64+32 || b[0] != inviteVersion {
		return nil, nil, nil, nil, bad
	}
	req = &JoinRequest{}
	copy(req.TokenID[:], b[1:9])
	ms := binary.BigEndian.Uint64(b[9:17])
	if ms > 1<<53 {
		return nil, nil, nil, nil, bad
	}
	req.Time = time.UnixMilli(int64(ms)).UTC()
	rest := b[17 : len(b)-96]
	pid, rest, ok := lenPrefixed(rest)
	if !ok {
		return nil, nil, nil, nil, bad
	}
	if req.Joiner, err = peer.IDFromBytes(pid); err != nil {
		return nil, nil, nil, nil, bad
	}
	if len(rest) < identity.PrekeySize {
		return nil, nil, nil, nil, bad
	}
	if req.Prekey, err = identity.ParsePrekey(rest[:identity.PrekeySize]); err != nil {
		return nil, nil, nil, nil, bad
	}
	name, rest, ok := lenPrefixed(rest[identity.PrekeySize:])
	// No control characters: the name is shown to an admin deciding
	// whether to approve (a terminal escape could redraw what it sees).
	if !ok || len(rest) != 0 || len(name) == 0 || len(name) > MaxNameLen || !utf8.Valid(name) || bytes.IndexFunc(name, unicode.IsControl) >= 0 {
		return nil, nil, nil, nil, bad
	}
	req.Name = string(name)
	n := len(b)
	return req, b[:n-96], b[n-96 : n-32], b[n-32:], nil
}

// Welcome signs the roster addition of a verified joiner (this device must
// be an admin: ErrUnauthorized otherwise, and the node hands the request to
// an admin) and returns the welcome sealed (HPKE) to the joiner's box key,
// info "remora/v1/welcome" ‖ box key ID: the roster log (with the channel
// descriptions), the root secret and the contributions, MACed with the
// token. Sender keys follow as ordinary hand-outs in Update.Send.
func (c *Circle) Welcome(req *JoinRequest) ([]byte, *Update, error) {
	if req.token == (Token{}) {
		return nil, nil, errors.New("invite: welcome: request was not opened with OpenJoin")
	}
	c.mu.Lock()
	rec, ok := c.invites[req.TokenID]
	approved := ok && rec.UsedBy == req.Joiner
	c.mu.Unlock()
	if !approved {
		return nil, nil, fmt.Errorf("invite: welcome: %w: the join of %s was not approved (ApproveJoin, or an in-person invite)", ErrUnauthorized, req.Joiner)
	}
	r := c.Roster()
	var u *Update
	if m, ok := r.Member(req.Joiner); !ok || !m.Prekey.Public.Equal(req.Prekey.Public) {
		var err error
		u, err = c.AddMember(req.Joiner, req.Prekey, req.Name, RoleMember)
		if err != nil {
			return nil, nil, fmt.Errorf("invite: welcome: %w", err)
		}
	} else {
		u = &Update{Epoch: r.Epoch}
	}
	c.mu.Lock()
	b := []byte{inviteVersion}
	tid := req.token.ID()
	b = append(b, tid[:]...)
	b = append(b, c.log.circle[:]...)
	b = append(b, c.root[:]...)
	b = binary.AppendUvarint(b, uint64(len(c.contrib)))
	for h, s := range c.contrib {
		b = append(b, h[:]...)
		b = append(b, s[:]...)
	}
	ops := c.log.Ops()
	b = binary.AppendUvarint(b, uint64(len(ops)))
	for _, o := range ops {
		b = binary.AppendUvarint(b, uint64(len(o)))
		b = append(b, o...)
	}
	c.mu.Unlock()
	b = append(b, mac(req.token, "remora/v1/welcome-mac", b)...)
	sealed, err := hpkeSeal(req.Prekey.Public, joinInfo("remora/v1/welcome", req.Prekey.Public), b)
	if err != nil {
		return nil, nil, fmt.Errorf("invite: seal welcome: %w", err)
	}
	return sealed, u, nil
}

// Join opens the welcome for a pending join and returns the circle. The
// roster must verify and contain this device, added by an admin, and the
// inviter must be a member.
func Join(k *identity.Keyring, p *PendingJoin, sealed []byte, opts Options) (*Circle, *Update, error) {
	opts.fill()
	var b []byte
	for _, bk := range k.BoxKeys() {
		if !bk.Public.Equal(p.prekey.Public) {
			continue
		}
		pl, err := hpkeOpen(bk.Private, joinInfo("remora/v1/welcome", bk.Public), sealed)
		if err == nil {
			b = pl
		}
	}
	if b == nil || len(b) < 1+8+16+32+1+1+32 || b[0] != inviteVersion {
		return nil, nil, ErrWelcomeInvalid
	}
	body, tag := b[:len(b)-32], b[len(b)-32:]
	if !hmac.Equal(tag, mac(p.Invite.Token, "remora/v1/welcome-mac", body)) {
		return nil, nil, fmt.Errorf("%w (MAC mismatch)", ErrWelcomeInvalid)
	}
	tid := p.Invite.Token.ID()
	if !bytes.Equal(body[1:9], tid[:]) {
		return nil, nil, fmt.Errorf("%w (another invite)", ErrWelcomeInvalid)
	}
	var circleID ID
	copy(circleID[:], body[9:25])
	var root [32]byte
	copy(root[:], body[25:57])
	rest := body[57:]
	n, m := binary.Uvarint(rest)
	if m <= 0 || n > uint64(len(rest))/64 {
		return nil, nil, fmt.Errorf("%w (contributions)", ErrWelcomeInvalid)
	}
	rest = rest[m:]
	contrib := map[Hash][32]byte{}
	for range n {
		if len(rest) < 64 {
			return nil, nil, fmt.Errorf("%w (contributions)", ErrWelcomeInvalid)
		}
		contrib[Hash(rest[:32])] = [32]byte(rest[32:64])
		rest = rest[64:]
	}
	n, m = binary.Uvarint(rest)
	if m <= 0 || n > uint64(len(rest)) {
		return nil, nil, fmt.Errorf("%w (ops)", ErrWelcomeInvalid)
	}
	rest = rest[m:]
	var ops [][]byte
	for range n {
		o, r, ok := lenPrefixed(rest)
		if !ok {
			return nil, nil, fmt.Errorf("%w (ops)", ErrWelcomeInvalid)
		}
		ops, rest = append(ops, o), r
	}
	if len(rest) != 0 {
		return nil, nil, fmt.Errorf("%w (trailing bytes)", ErrWelcomeInvalid)
	}
	log, err := VerifyLog(ops)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: roster: %v", ErrWelcomeInvalid, err)
	}
	r := log.Roster()
	me, ok := r.Member(k.Identity().PeerID())
	if log.circle != circleID || !ok || !me.Prekey.Public.Equal(p.prekey.Public) {
		return nil, nil, fmt.Errorf("%w (this device is not in the roster)", ErrWelcomeInvalid)
	}
	if !r.IsMember(p.Invite.Inviter) {
		return nil, nil, fmt.Errorf("%w (inviter is not a member)", ErrWelcomeInvalid)
	}
	c := newCircle(k, log, opts)
	c.root = root
	c.contrib = contrib
	if r.History {
		// Learn the epoch before this device joined, so the members' hand-
		// outs of its keys (and envelopes sealed under it) are accepted
		// within the grace window.
		if prev, ok := log.RosterBefore(me.Since); ok {
			rec := epochRecord{Epoch: prev.Epoch, Seen: opts.Now(), Superseded: opts.Now(), Removals: prev.Removals()}
			for _, m := range prev.Members() {
				rec.Members = append(rec.Members, m.Peer)
			}
			c.epochs = append(c.epochs, rec)
		}
	}
	u := &Update{}
	c.enterEpoch(u, nil)
	return c, u, nil
}

// Refusal reasons, on the wire.
const (
	refusedUsed    = 1
	refusedExpired = 2
	refusedDenied  = 3
	refusedVoid    = 4
)

var refusals = []struct {
	code byte
	err  error
}{{refusedUsed, ErrInviteUsed}, {refusedExpired, ErrInviteExpired}, {refusedDenied, ErrInviteDenied}, {refusedVoid, ErrInviteVoid}}

// Refuse answers an authentic join request whose invite cannot be used
// (OpenJoin returned ErrInviteUsed, ErrInviteExpired, ErrInviteDenied or
// ErrInviteVoid with the request; DenyJoin, ApproveJoin and ExpirePending
// return the requests to answer):
// token ID (8) ‖ reason (1) ‖ HMAC-SHA256(token, "remora/v1/join-refused" ‖
// token ID ‖ reason ‖ joiner peer ID)[:16]. Only the holder of the invite
// can make or check it, and it names the joiner, so it cannot be replayed
// against another device's join.
func Refuse(req *JoinRequest, reason error) ([]byte, error) {
	code := byte(0)
	for _, r := range refusals {
		if errors.Is(reason, r.err) {
			code = r.code
			break
		}
	}
	if code == 0 {
		return nil, fmt.Errorf("invite: refuse: %w is not a reason to answer", reason)
	}
	if req == nil || req.token == (Token{}) {
		return nil, errors.New("invite: refuse: not an authentic request")
	}
	b := append(req.TokenID[:], code)
	return append(b, refusalMAC(req.token, b, req.Joiner)...), nil
}

func refusalMAC(t Token, head []byte, joiner peer.ID) []byte {
	return mac(t, "remora/v1/join-refused", append(append([]byte{}, head...), joiner...))[:16]
}

// Refused returns the reason (ErrInviteUsed, ErrInviteExpired,
// ErrInviteDenied or ErrInviteVoid) if b is the inviter's refusal of this
// pending join, nil otherwise.
func (p *PendingJoin) Refused(b []byte) error {
	if len(b) != 8+1+16 {
		return nil
	}
	id := p.Invite.Token.ID()
	if !bytes.Equal(b[:8], id[:]) || !hmac.Equal(b[9:], refusalMAC(p.Invite.Token, b[:9], p.self)) {
		return nil
	}
	for _, r := range refusals {
		if r.code == b[8] {
			return r.err
		}
	}
	return nil
}
