package matrix

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sort"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/remora-p2p/remora/sdk"
)

// Room describes a joined room, for `remora channel add matrix` to offer.
type Room struct {
	ID        string `json:"id"`
	Name      string `json:"name,omitempty"`
	Alias     string `json:"alias,omitempty"`
	Members   int    `json:"members"`
	Encrypted bool   `json:"encrypted"` // refused by Configure
	// BoardLevel is the power level the room requires for its board state
	// events (BoardType), OwnLevel ours; below it the board uses the log fallback.
	BoardLevel int `json:"board_level"`
	OwnLevel   int `json:"own_level"`
	// MemberLevel is the level of members without their own entry
	// (users_default), which is what anyone joining later gets.
	MemberLevel int `json:"member_level"`
	// MembersMayPublish says every joined member, and anyone joining at
	// MemberLevel, may send board state: only then does the board use
	// state events (see the log fallback in board.go).
	MembersMayPublish bool `json:"members_may_publish"`
	// CanSetPower says AllowBoard would succeed.
	CanSetPower bool `json:"can_set_power"`
}

// JoinedRooms logs in as Configure does (req.Config may omit room; pass the
// channel's StateDir so no extra device is created) and lists the rooms the
// account has joined, sorted by name.
func JoinedRooms(ctx context.Context, req sdk.ConfigureRequest) ([]Room, error) {
	cfg, err := parseConfig(req.Config, false)
	if err != nil {
		return nil, err
	}
	cli, _, err := login(ctx, cfg, req.Secrets, req.StateDir, logger(req.Logger))
	if err != nil {
		return nil, err
	}
	defer cli.Client.CloseIdleConnections()
	joined, err := cli.JoinedRooms(ctx)
	if err != nil {
		return nil, classify("list joined rooms", err)
	}
	var rooms []Room
	for _, rid := range joined.JoinedRooms {
		c := &channel{cli: cli, roomID: rid}
		state, err := c.roomState(ctx)
		if err != nil {
			return nil, classify("read state of "+string(rid), err)
		}
		rooms = append(rooms, describeRoom(rid, state, string(cli.UserID)))
	}
	sort.Slice(rooms, func(i, j int) bool { return rooms[i].Name+rooms[i].ID < rooms[j].Name+rooms[j].ID })
	return rooms, nil
}

func describeRoom(rid id.RoomID, state []rawEvent, self string) Room {
	r := Room{ID: string(rid)}
	for _, ev := range state {
		if ev.StateKey == nil || *ev.StateKey != "" {
			continue
		}
		var c struct {
			Name  string `json:"name"`
			Alias string `json:"alias"`
		}
		switch ev.Type {
		case "m.room.name":
			if json.Unmarshal(ev.Content, &c) == nil {
				r.Name = c.Name
			}
		case "m.room.canonical_alias":
			if json.Unmarshal(ev.Content, &c) == nil {
				r.Alias = c.Alias
			}
		case "m.room.encryption":
			r.Encrypted = len(ev.Content) > 2
		}
	}
	pl := parsePowerLevels(state)
	r.Members = len(pl.members)
	board := BoardType(string(rid))
	r.BoardLevel, r.OwnLevel = pl.stateLevel(board), pl.userLevel(self)
	r.MemberLevel = pl.defaultLevel()
	r.MembersMayPublish = !pl.anyoneBelow(board) && r.MemberLevel >= r.BoardLevel
	r.CanSetPower = r.OwnLevel >= pl.stateLevel("m.room.power_levels")
	return r
}

// AllowBoard sets the power level the room requires for its board state
// events (BoardType) to level (0 lets every member publish presence as state),
// leaving the rest of the power levels as they are. It needs an account
// allowed to change the room's power levels (an admin, usually 100); others
// get CodeUnsupported saying so.
func AllowBoard(ctx context.Context, req sdk.ConfigureRequest, level int) error {
	cfg, err := parseConfig(req.Config, true)
	if err != nil {
		return err
	}
	cli, _, err := login(ctx, cfg, req.Secrets, req.StateDir, logger(req.Logger))
	if err != nil {
		return err
	}
	defer cli.Client.CloseIdleConnections()
	rid, err := joinRoom(ctx, cli, cfg.Room)
	if err != nil {
		return err
	}
	// Keep every field, including ones mautrix does not model.
	var content map[string]any
	url := cli.BuildClientURL("v3", "rooms", rid, "state", "m.room.power_levels", "")
	if _, err := cli.MakeFullRequest(ctx, mautrix.FullRequest{Method: http.MethodGet, URL: url, ResponseJSON: &content, MaxAttempts: 1}); err != nil {
		return classify("read power levels", err)
	}
	events, _ := content["events"].(map[string]any)
	if events == nil {
		events = map[string]any{}
	}
	events[BoardType(string(rid))] = level
	content["events"] = events
	if _, err := cli.MakeFullRequest(ctx, mautrix.FullRequest{Method: http.MethodPut, URL: url, RequestJSON: content, MaxAttempts: 1}); err != nil {
		if matrixCode(err) == "M_FORBIDDEN" {
			return sdk.Errorf(sdk.CodeUnsupported, "matrix: %s may not change the power levels of %s: ask a room admin to run this: %w", cli.UserID, rid, err)
		}
		return classify("set power levels", err)
	}
	return nil
}

func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
