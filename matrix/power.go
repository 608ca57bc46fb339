package matrix

import (
	"encoding/json"
	"math"
)

// powerLevels is the part of m.room.power_levels that decides who may send
// which state event.
type powerLevels struct {
	present      bool
	Users        map[string]json.Number `json:"users"`
	UsersDefault json.Number            `json:"users_default"`
	Events       map[string]json.Number `json:"events"`
	StateDefault *json.Number           `json:"state_default"`
	members      []string
}

func level(n json.Number, def int) int {
	if n == "" {
		return def
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) {
		return def
	}
	return int(f)
}

// parsePowerLevels reads power levels and joined members from room state.
func parsePowerLevels(state []rawEvent) powerLevels {
	var pl powerLevels
	for _, ev := range state {
		if ev.StateKey == nil {
			continue
		}
		switch ev.Type {
		case "m.room.power_levels":
			if *ev.StateKey == "" {
				var p powerLevels
				if json.Unmarshal(ev.Content, &p) == nil {
					p.members = pl.members
					pl = p
					pl.present = true
				}
			}
		case "m.room.member":
			var m struct {
				Membership string `json:"membership"`
			}
			if json.Unmarshal(ev.Content, &m) == nil && m.Membership == "join" {
				pl.members = append(pl.members, *ev.StateKey)
			}
		}
	}
	return pl
}

// stateLevel is the level needed to send state events of type t (the spec's
// defaults: 50 with a power_levels event, 0 without one).
func (p powerLevels) stateLevel(t string) int {
	if !p.present {
		return 0
	}
	def := 50
	if p.StateDefault != nil {
		def = level(*p.StateDefault, 50)
	}
	if n, ok := p.Events[t]; ok {
		return level(n, def)
	}
	return def
}

func (p powerLevels) userLevel(user string) int {
	if !p.present {
		return 0
	}
	if n, ok := p.Users[user]; ok {
		return level(n, 0)
	}
	return p.defaultLevel()
}

// defaultLevel is the level of users without an entry of their own.
func (p powerLevels) defaultLevel() int {
	if !p.present {
		return 0
	}
	return level(p.UsersDefault, 0)
}

// anyoneBelow reports whether a joined member may not send t state events.
func (p powerLevels) anyoneBelow(t string) bool {
	need := p.stateLevel(t)
	for _, m := range p.members {
		if p.userLevel(m) < need {
			return true
		}
	}
	return false
}
