package circle

import (
	"crypto/hpke"
	"slices"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/remora-p2p/remora/core/envelope"
	"github.com/remora-p2p/remora/core/identity"
)

// EnvelopeID is the circle ID as package envelope names circles (32 bytes):
// the 16-byte circle ID followed by 16 zero bytes.
func (id ID) EnvelopeID() envelope.CircleID {
	var c envelope.CircleID
	copy(c[:], id[:])
	return c
}

// Recipient returns what envelope.Sealer.Direct needs to seal to a member's
// box prekey as recorded in the roster.
func (m Member) Recipient() (envelope.Recipient, error) {
	pk, err := hpke.NewDHKEMPublicKey(m.Prekey.Public)
	if err != nil {
		return envelope.Recipient{}, err
	}
	return envelope.Recipient{ID: m.Peer, BoxKey: pk}, nil
}

// Signer returns the envelope signer of a device.
func Signer(id *identity.Identity) envelope.Signer {
	return envelope.Signer{ID: id.PeerID(), Key: id.PrivateKey()}
}

var _ envelope.Keys = (*Circle)(nil)

// epochKeys returns the cached envelope keys of an epoch. Called with c.mu held.
func (c *Circle) epochKeys(e Epoch) (*envelope.EpochKeys, bool) {
	if ek, ok := c.ek[e]; ok {
		return ek, true
	}
	s, err := c.epochSecret(e)
	if err != nil {
		return nil, false
	}
	ek, err := envelope.NewEpochKeys(c.log.circle.EnvelopeID(), envelope.Epoch(e), s.secret[:])
	if err != nil {
		return nil, false
	}
	c.ek[e] = ek
	return ek, true
}

// SendEpochKeys returns the envelope keys to seal under now: the current
// epoch's, never an older one. It fails like SendKey while the epoch secret
// is incomplete.
func (c *Circle) SendEpochKeys() (*envelope.EpochKeys, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.log.Roster().Epoch
	if _, err := c.epochSecret(e); err != nil {
		return nil, err
	}
	ek, _ := c.epochKeys(e)
	return ek, nil
}

// Epochs implements envelope.Keys for this circle: the current epoch first,
// then older epochs within the grace window.
func (c *Circle) Epochs() []*envelope.EpochKeys {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.opts.Now()
	var out []*envelope.EpochKeys
	if ek, ok := c.epochKeys(c.log.Roster().Epoch); ok {
		out = append(out, ek)
	}
	for i := len(c.epochs) - 1; i >= 0; i-- {
		rec := &c.epochs[i]
		if rec.Superseded.IsZero() || now.Sub(rec.Superseded) > c.opts.EpochGrace || rec.Epoch == c.log.Roster().Epoch {
			continue
		}
		if ek, ok := c.epochKeys(rec.Epoch); ok {
			out = append(out, ek)
		}
	}
	return out
}

// Members implements envelope.Keys: the roster of the epoch, minus anyone no
// longer in the current roster; nothing for an epoch past its grace window.
// The answer depends only on the epoch and the current epoch (which names
// the current member set), so it is kept for that pair: every envelope
// opened asks, and building it sorts the roster and parses every member's
// key (8 % of a 150-member benchmark's CPU before). The slice is shared:
// callers must not modify it.
func (c *Circle) Members(circle envelope.CircleID, e envelope.Epoch) []envelope.Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	if circle != c.log.circle.EnvelopeID() {
		return nil
	}
	r := c.log.Roster()
	var peers []peer.ID
	if Epoch(e) == r.Epoch {
		if out, ok := c.members[[2]Epoch{r.Epoch, r.Epoch}]; ok {
			return out
		}
		for _, m := range r.Members() {
			peers = append(peers, m.Peer)
		}
	} else {
		rec, ok := c.epochRec(Epoch(e))
		if !ok || rec.Superseded.IsZero() || c.opts.Now().Sub(rec.Superseded) > c.opts.EpochGrace {
			return nil
		}
		if out, ok := c.members[[2]Epoch{Epoch(e), r.Epoch}]; ok {
			return out
		}
		for _, p := range rec.Members {
			if r.IsMember(p) {
				peers = append(peers, p)
			}
		}
	}
	out := make([]envelope.Member, 0, len(peers))
	for _, p := range peers {
		if pub, err := identity.PublicKeyOf(p); err == nil {
			out = append(out, envelope.Member{ID: p, Key: pub})
		}
	}
	if len(c.members) >= maxMemberCache {
		clear(c.members) // old epochs: refilled on demand
	}
	c.members[[2]Epoch{Epoch(e), r.Epoch}] = out
	return out
}

// maxMemberCache bounds the epochs Members keeps answers for.
const maxMemberCache = 16

// MessageKeys implements envelope.Keys: sender's message keys in the epoch
// from tomorrow (clock skew at midnight) back to the oldest day within the
// maximum age, newest first.
func (c *Circle) MessageKeys(circle envelope.CircleID, e envelope.Epoch, sender peer.ID) ([][]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if circle != c.log.circle.EnvelopeID() {
		return nil, false
	}
	if err := c.acceptable(Epoch(e), sender); err != nil {
		return nil, false
	}
	ch, ok := c.chains[chainID{Epoch(e), sender}]
	if !ok {
		return nil, false
	}
	now := c.opts.Now()
	first := max(DayOf(now.Add(-c.opts.MaxAge)), ch.Day)
	last := DayOf(now) + 1
	if last < first || last-ch.Day > MaxRatchetSteps {
		return nil, true
	}
	k, _ := ch.at(first)
	keys := make([][]byte, 0, last-first+1)
	for d := first; ; d++ {
		mk := messageKey(k)
		keys = append(keys, mk[:])
		if d == last {
			break
		}
		k = ratchet(k)
	}
	slices.Reverse(keys)
	return keys, true
}

// BoxKeys implements envelope.Keys: this device's box keys still held.
func (c *Circle) BoxKeys() []hpke.PrivateKey { return boxKeys(c.keys) }

func boxKeys(k *identity.Keyring) []hpke.PrivateKey {
	var out []hpke.PrivateKey
	for _, bk := range k.BoxKeys() {
		if sk, err := hpke.NewDHKEMPrivateKey(bk.Private); err == nil {
			out = append(out, sk)
		}
	}
	return out
}

// Set is every circle a device belongs to, as one envelope.Keys for the
// node's Opener. It is safe for concurrent use.
type Set struct {
	keys    *identity.Keyring
	mu      sync.RWMutex
	circles map[envelope.CircleID]*Circle
}

var _ envelope.Keys = (*Set)(nil)

// NewSet returns an empty set for the device's keyring.
func NewSet(k *identity.Keyring) *Set {
	return &Set{keys: k, circles: map[envelope.CircleID]*Circle{}}
}

// Put adds or replaces a circle.
func (s *Set) Put(c *Circle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.circles[c.ID().EnvelopeID()] = c
}

// Delete removes a circle.
func (s *Set) Delete(id ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.circles, id.EnvelopeID())
}

// Get returns a circle by ID.
func (s *Set) Get(id ID) (*Circle, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.circles[id.EnvelopeID()]
	return c, ok
}

// Epochs implements envelope.Keys over all circles.
func (s *Set) Epochs() []*envelope.EpochKeys {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*envelope.EpochKeys
	for _, c := range s.circles {
		out = append(out, c.Epochs()...)
	}
	return out
}

// Members implements envelope.Keys.
func (s *Set) Members(circle envelope.CircleID, e envelope.Epoch) []envelope.Member {
	s.mu.RLock()
	c, ok := s.circles[circle]
	s.mu.RUnlock()
	if !ok {
		return nil
	}
	return c.Members(circle, e)
}

// MessageKeys implements envelope.Keys.
func (s *Set) MessageKeys(circle envelope.CircleID, e envelope.Epoch, sender peer.ID) ([][]byte, bool) {
	s.mu.RLock()
	c, ok := s.circles[circle]
	s.mu.RUnlock()
	if !ok {
		return nil, false
	}
	return c.MessageKeys(circle, e, sender)
}

// BoxKeys implements envelope.Keys.
func (s *Set) BoxKeys() []hpke.PrivateKey { return boxKeys(s.keys) }
