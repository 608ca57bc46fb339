package circle

import (
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// ErrLastAdmin refuses an operation that would leave the circle without an
// admin: nobody could then add, remove or approve anyone.
var ErrLastAdmin = errors.New("circle: this would leave the circle without an admin; make another member admin first (remora circle role NAME admin)")

// MemberInfo is a member with where its membership came from.
type MemberInfo struct {
	Member
	AddedBy peer.ID   // author of the add (the creator for the creator)
	Added   time.Time // the add's time, on its author's clock
}

// MemberInfos lists the members, sorted by peer ID, with who added each and when.
func (c *Circle) MemberInfos() []MemberInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []MemberInfo
	for _, m := range c.log.Roster().Members() {
		mi := MemberInfo{Member: m}
		if o, ok := c.log.Op(m.Since); ok {
			mi.AddedBy, mi.Added = o.Author, o.Time
		}
		out = append(out, mi)
	}
	return out
}

// FormerMember returns the roster entry of a device that a remove op took
// out of the roster: what was known of it just before (its box key, to tell
// it of its removal).
func (c *Circle) FormerMember(remove Hash) (Member, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	o, ok := c.log.Op(remove)
	if !ok || o.Kind != OpRemove {
		return Member{}, false
	}
	before, ok := c.log.RosterBefore(remove)
	if !ok {
		return Member{}, false
	}
	return before.Member(o.Target)
}

// keepsAnAdmin refuses to remove or demote the last admin while other
// members remain (the last member may leave: the circle ends with it).
func keepsAnAdmin(r *Roster, o Op) error {
	if !r.IsAdmin(o.Target) {
		return nil
	}
	demotes := o.Kind == OpRole && o.Role != RoleAdmin
	if o.Kind != OpRemove && !demotes {
		return nil
	}
	admins := 0
	for _, m := range r.Members() {
		if m.Role == RoleAdmin {
			admins++
		}
	}
	if admins > 1 || (o.Kind == OpRemove && r.Len() == 1) {
		return nil
	}
	m, _ := r.Member(o.Target)
	return fmt.Errorf("%w: %s is its only admin", ErrLastAdmin, m.Name)
}
