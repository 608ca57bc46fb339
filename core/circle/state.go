package circle

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/remora-p2p/remora/core/envelope"
	"github.com/remora-p2p/remora/core/identity"
)

// Errors about keys. ErrNoSenderKey and ErrMissingSecret are transient: the
// node holds the envelope, asks for the key (see [Circle.Requests]) and
// retries until the envelope expires.
var (
	ErrNoSenderKey   = errors.New("circle: sender key not received yet")
	ErrMissingSecret = errors.New("circle: epoch secret incomplete: a remove op's contribution has not arrived")
	ErrKeyExpired    = errors.New("circle: key deleted after its maximum age")
	ErrUnknownEpoch  = errors.New("circle: unknown epoch")
	ErrEpochExpired  = errors.New("circle: old epoch past its grace window")
	ErrNotMember     = errors.New("circle: sender is not in the roster")
)

// Defaults for Options.
const (
	DefaultEpochGrace = 24 * time.Hour
	DefaultMaxAge     = 14 * 24 * time.Hour
)

// Options configure a Circle. The zero value is usable.
type Options struct {
	Now        func() time.Time // time.Now when nil
	Rand       io.Reader        // crypto/rand when nil
	EpochGrace time.Duration    // old-epoch envelopes accepted this long after a newer epoch; DefaultEpochGrace
	MaxAge     time.Duration    // maximum envelope age: keys older than this are deleted; DefaultMaxAge
	Logger     *slog.Logger
}

func (o *Options) fill() {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.EpochGrace <= 0 {
		o.EpochGrace = DefaultEpochGrace
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

type chainID struct {
	Epoch Epoch
	Owner peer.ID
}

type epochRecord struct {
	Epoch      Epoch     `json:"epoch"`
	Seen       time.Time `json:"seen"`
	Superseded time.Time `json:"superseded,omitzero"`
	Secret     []byte    `json:"secret,omitempty"` // cached epoch secret once complete
	Names      []byte    `json:"names,omitempty"`  // and its board-name key
	Members    []peer.ID `json:"members"`          // the roster of this epoch
	Removals   []Hash    `json:"removals"`         // its applied remove ops: whose contributions make its secret
}

// Circle is one circle as this device holds it: the verified roster log, the
// epoch secrets, the sender keys and the open invites. It is safe for
// concurrent use.
type Circle struct {
	mu      sync.Mutex
	keys    *identity.Keyring
	opts    Options
	log     *Log
	root    [32]byte
	contrib map[Hash][32]byte
	epochs  []epochRecord // oldest first; the last is current
	chains  map[chainID]*chain
	invites map[TokenID]*inviteRecord
	early   map[Hash]earlyContribution     // contributions that arrived before their op
	ek      map[Epoch]*envelope.EpochKeys  // cache for the envelope.Keys methods
	members map[[2]Epoch][]envelope.Member // Members' answers by (epoch, current epoch)
	waiting map[Hash]*waitingOp            // roster ops whose parents have not arrived
	asked   map[Hash]asked                 // missing parents asked for: when, how often
	idText  map[peer.ID]string             // peer IDs' text, for State (see there)
}

type asked struct {
	at    time.Time
	tries int
}

// Update tells the node what changed after a roster operation.
type Update struct {
	Op           *Op   // the new operation (nil if it was already known or waits)
	Applied      []*Op // every operation applied, Op first, then those that waited for it
	EpochChanged bool  // the membership changed: a new epoch is current
	Epoch        Epoch
	// Send are key hand-outs, requests for missing roster operations and
	// roster operations to forward: seal and send each in one direct
	// envelope.
	Send []Outgoing
	// Waiting is set when the operation was kept to wait for its parents
	// (Send asks for them); the node may acknowledge its envelope, since
	// the operation is in the circle's state once saved.
	Waiting bool
}

// Create makes a new circle with the device as its first admin.
func Create(k *identity.Keyring, name, displayName string, history bool, opts Options) (*Circle, *Update, error) {
	opts.fill()
	id, err := NewID(opts.Rand)
	if err != nil {
		return nil, nil, err
	}
	self := k.Identity()
	o := &Op{Circle: id, Kind: OpCreate, Time: opts.Now(), Target: self.PeerID(), Prekey: k.Current(),
		Name: displayName, CircleName: name, History: history}
	if err := o.sign(self); err != nil {
		return nil, nil, fmt.Errorf("circle: create: %w", err)
	}
	log, err := NewLog(o.raw)
	if err != nil {
		return nil, nil, fmt.Errorf("circle: create: %w", err)
	}
	c := newCircle(k, log, opts)
	if _, err := io.ReadFull(opts.Rand, c.root[:]); err != nil {
		return nil, nil, fmt.Errorf("circle: create: %w", err)
	}
	u := &Update{Op: o}
	c.enterEpoch(u, nil)
	return c, u, nil
}

func newCircle(k *identity.Keyring, log *Log, opts Options) *Circle {
	return &Circle{keys: k, opts: opts, log: log, contrib: map[Hash][32]byte{}, chains: map[chainID]*chain{},
		invites: map[TokenID]*inviteRecord{}, early: map[Hash]earlyContribution{}, ek: map[Epoch]*envelope.EpochKeys{}, members: map[[2]Epoch][]envelope.Member{},
		waiting: map[Hash]*waitingOp{}, asked: map[Hash]asked{}}
}

// ID is the circle ID.
func (c *Circle) ID() ID { return c.log.circle }

// Self is the local device's peer ID.
func (c *Circle) Self() peer.ID { return c.keys.Identity().PeerID() }

// PresenceBoardKey names the board entry this device writes its presence
// record to at time at under the current epoch (EpochSecret.PresenceBoardKey),
// or false while it has no epoch secret or is not in the roster.
func (c *Circle) PresenceBoardKey(at time.Time) (string, bool) {
	secrets, err := c.EpochSecrets()
	if err != nil || len(secrets) == 0 {
		return "", false
	}
	var members []peer.ID
	for _, m := range c.Roster().Members() {
		members = append(members, m.Peer)
	}
	return secrets[0].PresenceBoardKey(members, c.Self(), at)
}

// presenceSlotSlack is how many slots past the current roster's size a
// reader also reads for an epoch of the grace window: that epoch's roster
// may have had members since removed, and its members deal slots among
// all of them.
const presenceSlotSlack = 8

// PresenceBoardKeys names every board entry a member may have written its
// presence record to and a reader can open: the current epoch's slots, one
// per member, and those of the epochs still in their grace window, with
// presenceSlotSlack more. A reader reads these keys alone, so junk others
// put on the board is never read, however much of it there is.
func (c *Circle) PresenceBoardKeys() []string {
	secrets, _ := c.EpochSecrets() // the ones held, even while the current one is missing
	n := c.Roster().Len()
	var keys []string
	seen := map[string]bool{}
	for i, s := range secrets {
		slots := n + presenceSlotSlack
		if i == 0 && s.Epoch == c.Epoch() {
			slots = n
		}
		// Epochs that differ by adds only share their names: each key once.
		for _, k := range s.PresenceSlotKeys(slots) {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	return keys
}

// Roster is the current verified roster.
func (c *Circle) Roster() *Roster {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.log.Roster()
}

// Epoch is the current epoch.
func (c *Circle) Epoch() Epoch { return c.Roster().Epoch }

// Ops returns the roster log in canonical order, for storage and sync.
func (c *Circle) Ops() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.log.Ops()
}

// HasOp reports whether the log holds an operation.
func (c *Circle) HasOp(h Hash) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.log.Has(h)
}

// ApplyOp verifies a roster operation and adds it, like ApplyOpFrom with
// no known sender.
func (c *Circle) ApplyOp(raw []byte) (*Update, error) { return c.ApplyOpFrom("", raw) }

// ApplyOpFrom verifies a roster operation received from member from (the
// sender of the envelope that carried it, not necessarily its author) and
// adds it. An operation whose parents have not arrived waits in the
// circle's state (Update.Waiting) and Update.Send asks from for the missing
// ones; it applies, with every operation that waited for it, when they
// arrive. Waiting is bounded by bytes (MaxWaitingBytes in all,
// MaxWaitingBytesPerSender per sender) and by age (MaxAge); past the bound
// it returns ErrRosterBacklog and keeps nothing: the node must not
// acknowledge the envelope, so the sender tries again.
func (c *Circle) ApplyOpFrom(from peer.ID, raw []byte) (*Update, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if h := Hash(sha256.Sum256(raw)); c.log.Has(h) {
		return &Update{Epoch: c.log.Roster().Epoch}, nil // a duplicate: nothing to verify
	}
	o, err := ParseOp(raw)
	if err != nil {
		return nil, fmt.Errorf("circle %s: apply op: %w", c.log.circle, err)
	}
	if o.Circle != c.log.circle {
		return nil, fmt.Errorf("circle %s: apply op: %w: %s", c.log.circle, ErrWrongCircle, o.Circle)
	}
	before := c.log.Roster()
	u := &Update{Epoch: before.Epoch}
	if c.log.Has(o.hash) {
		return u, nil
	}
	_, err = c.log.Add(raw)
	if errors.Is(err, ErrMissingParent) {
		if err := c.wait(o, from); err != nil {
			return nil, err
		}
		u.Waiting = true
		u.Send = c.opRequests(from)
		return u, nil
	}
	if err != nil {
		return nil, fmt.Errorf("circle %s: apply op: %w", c.log.circle, err)
	}
	applied, _ := c.log.Op(o.hash)
	u.Applied = c.drainWaiting([]*Op{applied})
	u.Op = applied
	for _, a := range u.Applied {
		u.Send = append(u.Send, c.forward(a)...)
	}
	c.afterChange(u, before)
	return u, nil
}

// Health describes the roster log as this device holds it.
type Health struct {
	Ops           int       // operations in the log
	Waiting       int       // operations waiting for their parents
	OldestWaiting time.Time // when the oldest of them arrived
	Member        bool      // this device is in the roster
	Prekey        time.Time // creation time of the prekey the roster holds for this device
	PrekeyCurrent bool      // ... and it is the keyring's current prekey
	KeyCreated    time.Time // creation time of the keyring's current prekey
}

// Health reports the roster log's size, what waits for its parents, and
// whether the roster holds this device's current box prekey.
func (c *Circle) Health() Health {
	cur := c.keys.Current()
	c.mu.Lock()
	defer c.mu.Unlock()
	h := Health{Ops: c.log.Len(), Waiting: len(c.waiting), KeyCreated: cur.Created}
	for _, w := range c.waiting {
		if h.OldestWaiting.IsZero() || w.Since.Before(h.OldestWaiting) {
			h.OldestWaiting = w.Since
		}
	}
	if m, ok := c.log.Roster().Member(c.Self()); ok {
		h.Member, h.Prekey = true, m.Prekey.Created
		h.PrekeyCurrent = m.Prekey.Public.Equal(cur.Public)
	}
	return h
}

// Limits on roster operations waiting for their parents.
const (
	MaxWaitingBytes          = 256 << 10
	MaxWaitingBytesPerSender = 64 << 10
)

// ErrRosterBacklog means a roster operation could not wait for its parents:
// the bytes already waiting reached a limit. Nothing was kept.
var ErrRosterBacklog = errors.New("circle: too many roster operations wait for their parents")

type waitingOp struct {
	op    *Op
	From  peer.ID   `json:"from,omitempty"`
	Since time.Time `json:"since"`
	Raw   []byte    `json:"op"`
}

// wait keeps an op whose parents are missing. Called with c.mu held.
func (c *Circle) wait(o *Op, from peer.ID) error {
	if _, ok := c.waiting[o.hash]; ok {
		return nil
	}
	total, mine := 0, 0
	for _, w := range c.waiting {
		total += len(w.Raw)
		if w.From == from {
			mine += len(w.Raw)
		}
	}
	if total+len(o.raw) > MaxWaitingBytes || mine+len(o.raw) > MaxWaitingBytesPerSender {
		return fmt.Errorf("circle %s: op %s: %w (%d bytes in all, %d from %s; limits %d and %d)", c.log.circle, o.hash,
			ErrRosterBacklog, total, mine, from, MaxWaitingBytes, MaxWaitingBytesPerSender)
	}
	c.waiting[o.hash] = &waitingOp{op: o, From: from, Since: c.opts.Now(), Raw: o.raw}
	return nil
}

// drainWaiting applies every waiting op whose parents are now all in the
// log, repeatedly, and returns applied followed by those. Called with c.mu
// held.
func (c *Circle) drainWaiting(applied []*Op) []*Op {
	for progress := true; progress; {
		progress = false
		for _, h := range c.waitingOrder() {
			w := c.waiting[h]
			ready := true
			for _, p := range w.op.Parents {
				if !c.log.Has(p) {
					ready = false
					break
				}
			}
			if !ready {
				continue
			}
			delete(c.waiting, h)
			if _, err := c.log.Add(w.Raw); err != nil {
				c.opts.Logger.Warn("circle: dropped a roster op that waited for its parents", "op", h.String(), "err", err)
				continue
			}
			o, _ := c.log.Op(h)
			applied = append(applied, o)
			progress = true
		}
	}
	return applied
}

// waitingOrder lists the waiting ops' hashes sorted, so every replica
// drains in the same order. Called with c.mu held.
func (c *Circle) waitingOrder() []Hash {
	hs := make([]Hash, 0, len(c.waiting))
	for h := range c.waiting {
		hs = append(hs, h)
	}
	slices.SortFunc(hs, func(a, b Hash) int { return bytes.Compare(a[:], b[:]) })
	return hs
}

// missingParents lists the ops that waiting ops need and nobody here holds,
// at most MaxParents: those the ops from sender from (any sender when
// from is empty) wait for, directly or through other waiting ops. The
// member that sent an op holds all its ancestors. Called with c.mu held.
func (c *Circle) missingParents(from peer.ID) []Hash {
	var out []Hash
	seen := map[Hash]bool{}
	var walk func(h Hash)
	walk = func(h Hash) {
		if seen[h] || len(out) >= MaxParents {
			return
		}
		seen[h] = true
		w, ok := c.waiting[h]
		if !ok {
			if !c.log.Has(h) {
				out = append(out, h)
			}
			return
		}
		for _, p := range w.op.Parents {
			walk(p)
		}
	}
	for _, h := range c.waitingOrder() {
		if from == "" || c.waiting[h].From == from {
			walk(h)
		}
	}
	return out
}

// opRequests asks for the parents that ops waiting here lack: of from when
// given (the member that sent them holds their ancestors), else of the
// member each waiting op came from, or an admin. An op already asked for is
// asked again only after a backoff (2 minutes, doubling to an hour), so the
// answers streaming in do not each cause another request. Called with c.mu
// held.
func (c *Circle) opRequests(from peer.ID) []Outgoing {
	r := c.log.Roster()
	self := c.Self()
	now := c.opts.Now()
	for h := range c.asked {
		if c.log.Has(h) || len(c.waiting) == 0 {
			delete(c.asked, h)
		}
	}
	ask := map[peer.ID]bool{}
	if from != "" {
		ask[from] = true
	} else {
		for _, w := range c.waiting {
			ask[w.From] = true
		}
	}
	var out []Outgoing
	heads := r.Heads
	if len(heads) > MaxParents {
		heads = heads[:MaxParents]
	}
	for _, p := range sortedPeers(ask) {
		var want []Hash
		for _, h := range c.missingParents(p) {
			a := c.asked[h]
			if !a.at.IsZero() && now.Sub(a.at) < min(2*time.Minute<<a.tries, time.Hour) {
				continue
			}
			if !a.at.IsZero() {
				a.tries++
			}
			a.at = now
			c.asked[h] = a
			want = append(want, h)
		}
		if len(want) == 0 {
			continue
		}
		to := p
		if to == "" || to == self || !r.IsMember(to) {
			to = ""
			for _, m := range r.Members() {
				if m.Role == RoleAdmin && m.Peer != self {
					to = m.Peer
					break
				}
			}
		}
		if to == "" {
			continue
		}
		out = append(out, c.outgoing(to, KeyMsg{Kind: MsgOpRequest, Circle: r.Circle, Want: want, Have: heads}))
	}
	return out
}

func sortedPeers(m map[peer.ID]bool) []peer.ID {
	out := make([]peer.ID, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// forward returns op o for the members this device added without o's
// author knowing them (their add is not in o's causal past): o's author
// sent o to the members it knew, so nobody else would send it to them.
// Called with c.mu held.
func (c *Circle) forward(o *Op) []Outgoing {
	self := c.Self()
	if o.Author == self {
		return nil
	}
	var out []Outgoing
	for _, m := range c.log.Roster().Members() {
		if m.Peer == self || m.Peer == o.Author || m.Peer == o.Target || m.Since == o.hash {
			continue
		}
		add, ok := c.log.Op(m.Since)
		if !ok || add.Author != self || c.log.Precedes(m.Since, o.hash) {
			continue
		}
		f := c.outgoing(m.Peer, KeyMsg{})
		f.Roster = o.raw
		out = append(out, f)
	}
	return out
}

// author signs a new op on top of the current heads and applies it.
func (c *Circle) author(o Op) (*Update, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	before := c.log.Roster()
	self := c.keys.Identity()
	// A member signs only what concerns itself: leaving, and its prekey.
	ownOp := (o.Kind == OpRemove || o.Kind == OpPrekey) && o.Target == self.PeerID() && before.IsMember(o.Target)
	if !before.IsAdmin(self.PeerID()) && !ownOp {
		if !before.IsMember(self.PeerID()) {
			return nil, fmt.Errorf("circle %s: %s: %w: this device is no longer a member", c.log.circle, o.Kind, ErrNotMember)
		}
		return nil, fmt.Errorf("circle %s: %s: %w: only admins sign roster operations", c.log.circle, o.Kind, ErrUnauthorized)
	}
	if err := keepsAnAdmin(before, o); err != nil {
		return nil, fmt.Errorf("circle %s: %s: %w", c.log.circle, o.Kind, err)
	}
	o.Circle = c.log.circle
	o.Parents = before.Heads
	o.Time = c.opts.Now()
	if err := o.sign(self); err != nil {
		return nil, fmt.Errorf("circle %s: %s: %w", c.log.circle, o.Kind, err)
	}
	if _, err := c.log.Add(o.raw); err != nil {
		return nil, fmt.Errorf("circle %s: %s: %w", c.log.circle, o.Kind, err)
	}
	op, _ := c.log.Op(o.hash)
	u := &Update{Op: op, Applied: []*Op{op}}
	if o.Kind == OpRemove {
		// A fresh contribution to the epoch secret, for the members that remain.
		var s [32]byte
		if _, err := io.ReadFull(c.opts.Rand, s[:]); err != nil {
			return nil, err
		}
		c.contrib[o.hash] = s
	}
	c.afterChange(u, before)
	return u, nil
}

// AddMember signs the addition of a member (admins only). The prekey must be
// signed by the member.
func (c *Circle) AddMember(p peer.ID, prekey identity.Prekey, name string, role Role) (*Update, error) {
	return c.author(Op{Kind: OpAdd, Target: p, Prekey: prekey, Name: name, Role: role})
}

// RemoveMember signs the removal of a member (admins only, or the member itself).
func (c *Circle) RemoveMember(p peer.ID) (*Update, error) {
	return c.author(Op{Kind: OpRemove, Target: p})
}

// PublishPrekey signs the device's current box prekey into the roster, so
// members seal direct envelopes to it rather than to the one it joined with,
// whose private half is deleted about three weeks after it was made. It does
// nothing (nil, nil) when the roster already holds that prekey or a newer
// one. Call it after the keyring rotates; any member may.
func (c *Circle) PublishPrekey() (*Update, error) {
	cur := c.keys.Current()
	c.mu.Lock()
	m, ok := c.log.Roster().Member(c.Self())
	c.mu.Unlock()
	if ok && !cur.Created.After(m.Prekey.Created) {
		return nil, nil
	}
	return c.author(Op{Kind: OpPrekey, Target: c.Self(), Prekey: cur})
}

// SetRole signs a role change (admins only).
func (c *Circle) SetRole(p peer.ID, role Role) (*Update, error) {
	return c.author(Op{Kind: OpRole, Target: p, Role: role})
}

// SetChannel adds or replaces a channel description (admins only).
func (c *Circle) SetChannel(ch Channel) (*Update, error) {
	return c.author(Op{Kind: OpChannelSet, Channel: ch})
}

// RemoveChannel removes a channel description (admins only).
func (c *Circle) RemoveChannel(id string) (*Update, error) {
	return c.author(Op{Kind: OpChannelRemove, Channel: Channel{ID: id}})
}

// SetSettings renames the circle (when name is not empty) and sets whether
// new members read history from before they joined (admins only).
func (c *Circle) SetSettings(name string, history bool) (*Update, error) {
	return c.author(Op{Kind: OpSettings, CircleName: name, History: history})
}

// afterChange records a new epoch and produces the hand-outs it needs.
// Called with c.mu held.
func (c *Circle) afterChange(u *Update, before *Roster) {
	r := c.log.Roster()
	u.Epoch = r.Epoch
	self := c.Self()
	for h, e := range c.early {
		if o, ok := c.log.Op(h); ok {
			delete(c.early, h)
			if err := c.takeContribution(o, e.From, e.Key); err != nil {
				c.opts.Logger.Warn("circle: dropped an early contribution", "op", h.String(), "err", err)
			}
		}
	}
	// Contributions of my own new remove ops go to every remaining member.
	if u.Op != nil && u.Op.Kind == OpRemove && u.Op.Author == self {
		if s, ok := c.contrib[u.Op.hash]; ok {
			for _, m := range r.Members() {
				if m.Peer != self {
					u.Send = append(u.Send, c.outgoing(m.Peer, KeyMsg{Kind: MsgContribution, Circle: r.Circle, Op: u.Op.hash, Key: s}))
				}
			}
		}
	}
	if r.Epoch == before.Epoch {
		return
	}
	c.enterEpoch(u, before)
}

// enterEpoch makes the roster's epoch current, creates the device's chain
// key for it and hands it to every other member. Called with c.mu held.
func (c *Circle) enterEpoch(u *Update, before *Roster) {
	r := c.log.Roster()
	now := c.opts.Now()
	u.EpochChanged = true
	u.Epoch = r.Epoch
	if n := len(c.epochs); n > 0 && c.epochs[n-1].Superseded.IsZero() {
		c.epochs[n-1].Superseded = now
	}
	rec := epochRecord{Epoch: r.Epoch, Seen: now, Removals: r.Removals()}
	for _, m := range r.Members() {
		rec.Members = append(rec.Members, m.Peer)
	}
	c.epochs = append(c.epochs, rec)
	self := c.Self()
	if !r.IsMember(self) {
		c.opts.Logger.Info("circle: this device is no longer in the roster", "circle", r.Circle.String())
		return
	}
	ch := &chain{Day: DayOf(now)}
	if _, err := io.ReadFull(c.opts.Rand, ch.Key[:]); err != nil {
		c.opts.Logger.Error("circle: no randomness for a chain key", "err", err)
		return
	}
	c.chains[chainID{r.Epoch, self}] = ch
	// After an add only, the members of the epoch before all hold this
	// device's chain of it and nobody else does: one broadcast under it
	// reaches them (N(N−1) direct envelopes per join were what stalled
	// forming past ~45 members); only the newcomers get direct ones.
	var old []peer.ID
	if before != nil {
		if _, err := c.handOutKey(before.Epoch); err == nil {
			old = c.othersOf(before.Epoch)
		}
	}
	if len(old) > 0 {
		u.Send = append(u.Send, Outgoing{Msg: c.senderKeyMsg(r.Epoch, ch), Epoch: before.Epoch, Broadcast: old})
	}
	for _, m := range r.Members() {
		if m.Peer != self && !slices.Contains(old, m.Peer) {
			u.Send = append(u.Send, c.outgoing(m.Peer, c.senderKeyMsg(r.Epoch, ch)))
		}
	}
	// History: new members also get this device's chain key of the epoch
	// before they joined, from its oldest retained day, sealed under the
	// new epoch (the only one they know).
	if r.History && before != nil {
		if old, ok := c.chains[chainID{before.Epoch, self}]; ok {
			for _, m := range r.Members() {
				if m.Peer != self && !before.IsMember(m.Peer) {
					u.Send = append(u.Send, Outgoing{To: m.Peer, Msg: c.senderKeyMsg(before.Epoch, old)})
				}
			}
		}
	}
}

// outgoing addresses a key message and picks the epoch to seal it under.
// Key messages are what a member needs to use a new epoch, so they travel
// under an epoch it can already open: the newest earlier epoch still inside
// the grace window of which the recipient was a member (and, for a
// contribution, that does not already depend on it); the current epoch only
// when there is none (a new member). Called with c.mu held.
func (c *Circle) outgoing(to peer.ID, m KeyMsg) Outgoing {
	o := Outgoing{To: to, Msg: m}
	cur := c.log.Roster().Epoch
	now := c.opts.Now()
	for i := len(c.epochs) - 1; i >= 0; i-- {
		rec := &c.epochs[i]
		if rec.Epoch == cur || !rec.Superseded.IsZero() && now.Sub(rec.Superseded) > c.opts.EpochGrace {
			continue
		}
		if !slices.Contains(rec.Members, to) {
			continue
		}
		if m.Kind == MsgContribution && slices.Contains(rec.Removals, m.Op) {
			continue
		}
		if _, err := c.epochSecret(rec.Epoch); err != nil {
			continue
		}
		o.Epoch = rec.Epoch
		break
	}
	return o
}

func (c *Circle) senderKeyMsg(e Epoch, ch *chain) KeyMsg {
	return KeyMsg{Kind: MsgSenderKey, Circle: c.log.circle, Epoch: e, Day: ch.Day, Key: ch.Key}
}

// epochRec finds an epoch record. Called with c.mu held.
func (c *Circle) epochRec(e Epoch) (*epochRecord, bool) {
	for i := len(c.epochs) - 1; i >= 0; i-- {
		if c.epochs[i].Epoch == e {
			return &c.epochs[i], true
		}
	}
	return nil, false
}

// acceptable checks that envelopes of epoch e from sender may be accepted
// now. Called with c.mu held.
func (c *Circle) acceptable(e Epoch, sender peer.ID) error {
	r := c.log.Roster()
	if !r.IsMember(sender) {
		return fmt.Errorf("%w: %s", ErrNotMember, sender)
	}
	if e == r.Epoch {
		return nil
	}
	rec, ok := c.epochRec(e)
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownEpoch, e)
	}
	if c.opts.Now().Sub(rec.Superseded) > c.opts.EpochGrace {
		return fmt.Errorf("%w: %s superseded at %s", ErrEpochExpired, e, rec.Superseded.Format(time.RFC3339))
	}
	return nil
}

// ErrHandOutClosed means no broadcast may go under an older epoch: a
// member of it is no longer a member, a removal changed the epoch secret's
// inputs since, or the epoch passed its grace window. The hand-out it
// was for is dropped; members that miss the key ask for it.
var ErrHandOutClosed = errors.New("circle: no broadcast under this epoch any more")

// HandOutKey returns the key to seal a broadcast sender-key hand-out
// ([Outgoing].Broadcast) under the older epoch e with: the device's chain
// key of e, ratcheted to today. It is the one exception to "nothing is
// sent under an old epoch", and it holds only while nobody outside the
// current roster holds that chain: e is superseded but within its grace
// window, every member of e is still a member, and the removals are those
// of e (a removed member keeps the chains it was given, so after a removal
// nothing may go under an epoch it was in). It fails with ErrHandOutClosed
// otherwise; SendKey is the key for everything else.
func (c *Circle) HandOutKey(e Epoch) (SenderKey, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.handOutKey(e)
}

// handOutKey is HandOutKey. Called with c.mu held.
func (c *Circle) handOutKey(e Epoch) (SenderKey, error) {
	r := c.log.Roster()
	self := c.Self()
	rec, ok := c.epochRec(e)
	switch {
	case !ok:
		return SenderKey{}, fmt.Errorf("circle %s: hand-out under %s: %w", r.Circle, e, ErrUnknownEpoch)
	case e == r.Epoch || rec.Superseded.IsZero():
		return SenderKey{}, fmt.Errorf("circle %s: hand-out under %s: %w: it is the current epoch", r.Circle, e, ErrHandOutClosed)
	case c.opts.Now().Sub(rec.Superseded) > c.opts.EpochGrace:
		return SenderKey{}, fmt.Errorf("circle %s: hand-out under %s: %w: past its grace window", r.Circle, e, ErrHandOutClosed)
	case !r.IsMember(self) || !slices.Contains(rec.Members, self):
		return SenderKey{}, fmt.Errorf("circle %s: hand-out under %s: %w: this device is not in both rosters", r.Circle, e, ErrHandOutClosed)
	case !slices.Equal(rec.Removals, r.Removals()):
		return SenderKey{}, fmt.Errorf("circle %s: hand-out under %s: %w: a removal since", r.Circle, e, ErrHandOutClosed)
	}
	for _, p := range rec.Members {
		if !r.IsMember(p) {
			return SenderKey{}, fmt.Errorf("circle %s: hand-out under %s: %w: %s is no longer a member", r.Circle, e, ErrHandOutClosed, p)
		}
	}
	if _, err := c.epochSecret(e); err != nil {
		return SenderKey{}, fmt.Errorf("circle %s: hand-out under %s: %w", r.Circle, e, err)
	}
	ch, ok := c.chains[chainID{e, self}]
	if !ok {
		return SenderKey{}, fmt.Errorf("circle %s: hand-out under %s: %w", r.Circle, e, ErrNoSenderKey)
	}
	day := DayOf(c.opts.Now())
	if !r.History {
		ch.advance(day) // forward secrecy, as in SendKey
	}
	k, err := ch.at(day)
	if err != nil {
		return SenderKey{}, fmt.Errorf("circle %s: hand-out under %s: %w", r.Circle, e, err)
	}
	return SenderKey{Epoch: e, Day: day, Key: messageKey(k)}, nil
}

// othersOf lists the members of epoch e other than this device. Called
// with c.mu held.
func (c *Circle) othersOf(e Epoch) []peer.ID {
	rec, ok := c.epochRec(e)
	if !ok {
		return nil
	}
	self := c.Self()
	var out []peer.ID
	for _, p := range rec.Members {
		if p != self {
			out = append(out, p)
		}
	}
	return out
}

// SendKey returns the key to seal a broadcast envelope with now: always the
// device's chain key of the current epoch, ratcheted to today, so nothing is
// ever sent under an epoch once a newer one is known.
func (c *Circle) SendKey() (SenderKey, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.log.Roster()
	self := c.Self()
	if !r.IsMember(self) {
		return SenderKey{}, fmt.Errorf("circle %s: send: %w: this device was removed", r.Circle, ErrNotMember)
	}
	if _, err := c.epochSecret(r.Epoch); err != nil {
		return SenderKey{}, fmt.Errorf("circle %s: send: %w", r.Circle, err)
	}
	ch, ok := c.chains[chainID{r.Epoch, self}]
	if !ok {
		return SenderKey{}, fmt.Errorf("circle %s: send: %w", r.Circle, ErrNoSenderKey)
	}
	day := DayOf(c.opts.Now())
	if !r.History {
		ch.advance(day) // forward secrecy for what was sent on earlier days
	}
	k, err := ch.at(day)
	if err != nil {
		return SenderKey{}, fmt.Errorf("circle %s: send: %w", r.Circle, err)
	}
	return SenderKey{Epoch: r.Epoch, Day: day, Key: messageKey(k)}, nil
}

// ReceiveKey returns the message key of sender for an epoch and day. It
// enforces the roster rules: the sender must be in the current roster, and an
// old epoch is accepted only within the grace window. ErrNoSenderKey means
// the key has not arrived: hold the envelope and send [Circle.Requests].
func (c *Circle) ReceiveKey(e Epoch, sender peer.ID, day uint32) ([32]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.acceptable(e, sender); err != nil {
		return [32]byte{}, fmt.Errorf("circle %s: receive: %w", c.log.circle, err)
	}
	now := c.opts.Now()
	if day > DayOf(now)+1 {
		return [32]byte{}, fmt.Errorf("circle %s: receive: %w: day %d is in the future", c.log.circle, ErrKeyExpired, day)
	}
	ch, ok := c.chains[chainID{e, sender}]
	if !ok {
		return [32]byte{}, fmt.Errorf("circle %s: receive from %s: %w", c.log.circle, sender, ErrNoSenderKey)
	}
	k, err := ch.at(day)
	if err != nil {
		return [32]byte{}, fmt.Errorf("circle %s: receive from %s: %w", c.log.circle, sender, err)
	}
	return messageKey(k), nil
}

// epochSecret derives the secret of epoch e. Called with c.mu held.
func (c *Circle) epochSecret(e Epoch) (EpochSecret, error) {
	rec, ok := c.epochRec(e)
	if !ok {
		return EpochSecret{}, fmt.Errorf("%w: %s", ErrUnknownEpoch, e)
	}
	if len(rec.Secret) == 32 && len(rec.Names) == 32 {
		s := EpochSecret{Circle: c.log.circle, Epoch: e}
		copy(s.secret[:], rec.Secret)
		copy(s.names[:], rec.Names)
		return s, nil
	}
	var parts [][32]byte
	for _, h := range rec.Removals {
		s, ok := c.contrib[h]
		if !ok {
			return EpochSecret{}, fmt.Errorf("%w: op %s", ErrMissingSecret, h)
		}
		parts = append(parts, s)
	}
	s := deriveEpochSecret(c.log.circle, e, c.root, parts)
	rec.Secret = append([]byte(nil), s.secret[:]...)
	rec.Names = append([]byte(nil), s.names[:]...)
	return s, nil
}

// EpochSecrets returns the secrets to match routing tags against: the
// current epoch's first, then older epochs still inside the grace window.
// The current one is missing (and ErrMissingSecret returned with the others)
// while a contribution has not arrived.
func (c *Circle) EpochSecrets() ([]EpochSecret, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.opts.Now()
	var out []EpochSecret
	cur, err := c.epochSecret(c.log.Roster().Epoch)
	if err == nil {
		out = append(out, cur)
	}
	for i := len(c.epochs) - 1; i >= 0; i-- {
		rec := &c.epochs[i]
		if rec.Superseded.IsZero() || now.Sub(rec.Superseded) > c.opts.EpochGrace || rec.Epoch == c.log.Roster().Epoch {
			continue
		}
		if s, err := c.epochSecret(rec.Epoch); err == nil {
			out = append(out, s)
		}
	}
	return out, err
}

// HandleKeyMsg processes a key message that arrived in a direct envelope
// from a member. It returns what to send back (answers to requests).
func (c *Circle) HandleKeyMsg(from peer.ID, m KeyMsg) ([]Outgoing, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.log.Roster()
	if m.Circle != r.Circle {
		return nil, fmt.Errorf("%w: key message for %s", ErrWrongCircle, m.Circle)
	}
	if !r.IsMember(from) {
		return nil, fmt.Errorf("circle %s: key message: %w: %s", r.Circle, ErrNotMember, from)
	}
	switch m.Kind {
	case MsgSenderKey:
		if err := c.acceptable(m.Epoch, from); errors.Is(err, ErrUnknownEpoch) {
			// The key may overtake the roster op that starts its epoch:
			// keep a bounded number; Maintain drops those whose epoch
			// never comes, and nothing opens under an unknown epoch.
			unknown := 0
			for id := range c.chains {
				if _, ok := c.epochRec(id.Epoch); !ok {
					unknown++
				}
			}
			if unknown >= maxEarly {
				return nil, fmt.Errorf("circle %s: sender key: %w (too many held)", r.Circle, err)
			}
		} else if err != nil {
			return nil, fmt.Errorf("circle %s: sender key: %w", r.Circle, err)
		}
		id := chainID{m.Epoch, from}
		if old, ok := c.chains[id]; ok && old.Day <= m.Day {
			return nil, nil // keep the older start: it opens more
		}
		oldest := DayOf(c.opts.Now().Add(-c.opts.MaxAge))
		ch := &chain{Day: m.Day, Key: m.Key}
		ch.advance(oldest)
		c.chains[id] = ch
		return nil, nil
	case MsgContribution:
		o, ok := c.log.Op(m.Op)
		if !ok {
			// The key may overtake the op (another channel, another path):
			// keep it until the op arrives, then check who sent it.
			if len(c.early) >= maxEarly {
				return nil, fmt.Errorf("circle %s: too many contributions for unknown ops", r.Circle)
			}
			c.early[m.Op] = earlyContribution{From: from, Key: m.Key}
			return nil, nil
		}
		return nil, c.takeContribution(o, from, m.Key)
	case MsgOpRequest:
		var out []Outgoing
		for _, raw := range c.log.Missing(m.Want, m.Have, maxOpAnswer) {
			o := c.outgoing(from, KeyMsg{})
			o.Roster = raw
			out = append(out, o)
		}
		return out, nil
	case MsgKeyRequest:
		if m.Op != (Hash{}) {
			s, ok := c.contrib[m.Op]
			if !ok {
				return nil, nil
			}
			return []Outgoing{c.outgoing(from, KeyMsg{Kind: MsgContribution, Circle: r.Circle, Op: m.Op, Key: s})}, nil
		}
		if err := c.acceptable(m.Epoch, from); err != nil {
			return nil, fmt.Errorf("circle %s: key request: %w", r.Circle, err)
		}
		if !c.mayHold(m.Epoch, from) {
			return nil, fmt.Errorf("circle %s: key request: %w: %s was not a member of epoch %s", r.Circle, ErrNotMember, from, m.Epoch)
		}
		ch, ok := c.chains[chainID{m.Epoch, c.Self()}]
		if !ok {
			return nil, nil
		}
		return []Outgoing{c.outgoing(from, c.senderKeyMsg(m.Epoch, ch))}, nil
	}
	return nil, fmt.Errorf("%w: kind %d", ErrMalformedKeyMsg, m.Kind)
}

// mayHold says whether p may be given this device's chain of epoch e: p
// was a member of e, or, when the circle keeps history, p joined in the
// epoch right after e (the history hand-out of enterEpoch). Anyone else
// asking is a later newcomer: given an older chain it would read what was
// sent before it joined, and the hand-outs broadcast under that epoch
// (HandOutKey). Called with c.mu held.
func (c *Circle) mayHold(e Epoch, p peer.ID) bool {
	rec, ok := c.epochRec(e)
	if !ok {
		return false
	}
	if slices.Contains(rec.Members, p) {
		return true
	}
	r := c.log.Roster()
	m, ok := r.Member(p)
	if !r.History || !ok {
		return false
	}
	prev, ok := c.log.RosterBefore(m.Since)
	return ok && prev.Epoch == e
}

// maxEarly bounds contributions held for ops not yet received.
const maxEarly = 64

// maxOpAnswer bounds the roster operations sent for one op request; the
// asker asks again for what is still missing.
const maxOpAnswer = 256

type earlyContribution struct {
	From peer.ID  `json:"from"`
	Key  [32]byte `json:"key"`
}

// takeContribution records a remove op's contribution if from may give it:
// the op's author or a current admin. Called with c.mu held.
func (c *Circle) takeContribution(o *Op, from peer.ID, key [32]byte) error {
	if o.Kind != OpRemove {
		return fmt.Errorf("circle %s: contribution for %s op %s", c.log.circle, o.Kind, o.hash)
	}
	if from != o.Author && !c.log.Roster().IsAdmin(from) {
		return fmt.Errorf("circle %s: contribution for %s: %w: from %s, not its author or an admin", c.log.circle, o.hash, ErrUnauthorized, from)
	}
	if _, ok := c.contrib[o.hash]; !ok {
		c.contrib[o.hash] = key
	}
	return nil
}

// Requests returns key requests for what is missing in the current epoch:
// contributions of remove ops (asked of their authors) and sender keys of
// members (asked of each), and requests for the parents of roster ops that
// wait for them (asked of the member that sent each). The node sends them
// with backoff.
func (c *Circle) Requests() []Outgoing {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.log.Roster()
	self := c.Self()
	var out []Outgoing
	for _, h := range r.Removals() {
		if _, ok := c.contrib[h]; ok {
			continue
		}
		o, _ := c.log.Op(h)
		to := o.Author
		if to == self || !r.IsMember(to) {
			// ask any admin who may hold it
			for _, m := range r.Members() {
				if m.Role == RoleAdmin && m.Peer != self {
					to = m.Peer
					break
				}
			}
		}
		if to != self {
			out = append(out, c.outgoing(to, KeyMsg{Kind: MsgKeyRequest, Circle: r.Circle, Op: h}))
		}
	}
	out = append(out, c.opRequests("")...)
	for _, m := range r.Members() {
		if m.Peer == self {
			continue
		}
		if _, ok := c.chains[chainID{r.Epoch, m.Peer}]; !ok {
			out = append(out, c.outgoing(m.Peer, KeyMsg{Kind: MsgKeyRequest, Circle: r.Circle, Epoch: r.Epoch}))
		}
	}
	return out
}

// KeyRequest asks from for its chain key of epoch e, which an envelope from
// it needs: one request to that member, or none when the key is here
// already, e is not an epoch of this circle, or from is not a member of it.
// (Requests asks every member whose key of the current epoch is missing:
// answering each held envelope with that would ask N members N times.)
func (c *Circle) KeyRequest(e Epoch, from peer.ID) []Outgoing {
	c.mu.Lock()
	defer c.mu.Unlock()
	if from == c.Self() {
		return nil
	}
	if _, ok := c.chains[chainID{e, from}]; ok {
		return nil
	}
	rec, ok := c.epochRec(e)
	if !ok || !slices.Contains(rec.Members, from) {
		return nil
	}
	return []Outgoing{c.outgoing(from, KeyMsg{Kind: MsgKeyRequest, Circle: c.log.circle, Epoch: e})}
}

// Maintain ratchets chains forward and deletes keys past their maximum age,
// old epochs past their grace window and expired invites. Call it hourly.
func (c *Circle) Maintain() {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.opts.Now()
	oldest := DayOf(now.Add(-c.opts.MaxAge))
	self := c.Self()
	cur := c.log.Roster().Epoch
	keep := map[Epoch]bool{cur: true}
	kept := c.epochs[:0]
	for _, rec := range c.epochs {
		if rec.Epoch == cur || now.Sub(rec.Superseded) <= c.opts.MaxAge {
			kept = append(kept, rec)
			keep[rec.Epoch] = true
		}
	}
	c.epochs = kept
	for id, ch := range c.chains {
		if !keep[id.Epoch] {
			delete(c.chains, id)
			continue
		}
		if id.Owner == self && !c.log.Roster().History {
			ch.advance(DayOf(now))
		} else {
			ch.advance(oldest)
		}
	}
	for t, inv := range c.invites {
		if now.After(inv.Expires.Add(c.opts.MaxAge)) {
			delete(c.invites, t)
		}
	}
	for h, w := range c.waiting {
		if now.Sub(w.Since) > c.opts.MaxAge {
			delete(c.waiting, h)
			c.opts.Logger.Warn("circle: dropped a roster op whose parents never arrived", "circle", c.log.circle.String(),
				"op", h.String(), "from", w.From, "since", w.Since)
		}
	}
}

// state is the secret part of a circle, persisted by the node (store keys
// bucket) next to the roster log.
type state struct {
	Version int                          `json:"version"`
	Root    []byte                       `json:"root"`
	Contrib map[string][]byte            `json:"contributions"`
	Epochs  []epochRecord                `json:"epochs"`
	Chains  []chainJSON                  `json:"chains"`
	Invites map[string]inviteJSON        `json:"invites,omitempty"`
	Early   map[string]earlyContribution `json:"early_contributions,omitempty"`
	Waiting []*waitingOp                 `json:"waiting_ops,omitempty"`
}

type chainJSON struct {
	Epoch Epoch   `json:"epoch"`
	Owner peer.ID `json:"owner"`
	chain
}

// epochOut and chainOut are how State writes epochs and chains: the same
// JSON as epochRecord and chainJSON (a field of the outer struct hides the
// embedded one of the same name), with peer IDs as text the circle keeps.
// A node persists the state after every key message, and a circle formed by
// 40 joins holds 40 epochs of up to 40 members and a chain per member and
// epoch: encoding each peer ID in base58 again took half of State's time
// and an eighth of the scale benchmark's CPU.
type epochOut struct {
	epochRecord
	Members []string `json:"members"`
}

type chainOut struct {
	chainJSON
	Owner string `json:"owner"`
}

// text is p's base58 text, remembered. Called with c.mu held.
func (c *Circle) text(p peer.ID) string {
	t, ok := c.idText[p]
	if !ok {
		if c.idText == nil {
			c.idText = map[peer.ID]string{}
		}
		t = p.String()
		c.idText[p] = t
	}
	return t
}

// stateOut is state as State writes it.
type stateOut struct {
	state
	Epochs []epochOut `json:"epochs"`
	Chains []chainOut `json:"chains"`
}

// State returns the circle's secret state (root secret, contributions, epoch
// history, sender keys, invites) for the store. Persist it together with
// Ops after every Update and HandleKeyMsg.
func (c *Circle) State() ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := stateOut{state: state{Version: 1, Root: c.root[:], Contrib: map[string][]byte{}, Invites: map[string]inviteJSON{}}}
	for h, v := range c.contrib {
		s.Contrib[h.String()] = append([]byte(nil), v[:]...)
	}
	s.Epochs = make([]epochOut, len(c.epochs))
	used := map[peer.ID]bool{}
	for i, rec := range c.epochs {
		s.Epochs[i] = epochOut{epochRecord: rec, Members: make([]string, len(rec.Members))}
		for j, p := range rec.Members {
			s.Epochs[i].Members[j] = c.text(p)
			used[p] = true
		}
	}
	s.Chains = make([]chainOut, 0, len(c.chains))
	for id, ch := range c.chains {
		s.Chains = append(s.Chains, chainOut{chainJSON: chainJSON{Epoch: id.Epoch, chain: *ch}, Owner: c.text(id.Owner)})
		used[id.Owner] = true
	}
	for p := range c.idText {
		if !used[p] {
			delete(c.idText, p) // bounded by the peers of the epochs held
		}
	}
	for t, inv := range c.invites {
		s.Invites[t.String()] = inv.json()
	}
	for _, h := range c.waitingOrder() {
		s.Waiting = append(s.Waiting, c.waiting[h])
	}
	if len(c.early) > 0 {
		s.Early = map[string]earlyContribution{}
		for h, e := range c.early {
			s.Early[h.String()] = e
		}
	}
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("circle %s: state: %w", c.log.circle, err)
	}
	return b, nil
}

// Load rebuilds a circle from its stored roster log (verified again) and
// secret state.
func Load(k *identity.Keyring, ops [][]byte, secret []byte, opts Options) (*Circle, error) {
	opts.fill()
	log, err := VerifyLog(ops)
	if err != nil {
		return nil, fmt.Errorf("circle: load: %w", err)
	}
	var s state
	if err := json.Unmarshal(secret, &s); err != nil || s.Version != 1 || len(s.Root) != 32 {
		return nil, fmt.Errorf("circle %s: load: secret state unreadable (version %d): %v", log.circle, s.Version, err)
	}
	c := newCircle(k, log, opts)
	copy(c.root[:], s.Root)
	for hs, v := range s.Contrib {
		var h Hash
		if err := unhex(h[:], hs); err != nil || len(v) != 32 {
			return nil, fmt.Errorf("circle %s: load: bad contribution %q", log.circle, hs)
		}
		c.contrib[h] = [32]byte(v)
	}
	c.epochs = s.Epochs
	for _, cj := range s.Chains {
		ch := cj.chain
		c.chains[chainID{cj.Epoch, cj.Owner}] = &ch
	}
	for ts, ij := range s.Invites {
		var t TokenID
		if err := unhex(t[:], ts); err != nil {
			return nil, fmt.Errorf("circle %s: load: bad invite %q", log.circle, ts)
		}
		rec, err := ij.record()
		if err != nil {
			return nil, fmt.Errorf("circle %s: load: invite %s: %w", log.circle, ts, err)
		}
		c.invites[t] = rec
	}
	for hs, e := range s.Early {
		var h Hash
		if err := unhex(h[:], hs); err != nil {
			return nil, fmt.Errorf("circle %s: load: bad contribution %q", log.circle, hs)
		}
		c.early[h] = e
	}
	for _, w := range s.Waiting {
		o, err := ParseOp(w.Raw)
		if err != nil || o.Circle != log.circle {
			return nil, fmt.Errorf("circle %s: load: bad waiting roster op: %v", log.circle, err)
		}
		if !log.Has(o.hash) {
			w.op = o
			c.waiting[o.hash] = w
		}
	}
	c.drainWaiting(nil)
	// The log may hold ops the secret state predates (saved separately).
	if n := len(c.epochs); n == 0 || c.epochs[n-1].Epoch != log.Roster().Epoch {
		u := &Update{}
		c.enterEpoch(u, nil)
	}
	return c, nil
}
