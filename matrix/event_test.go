package matrix

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/remora-p2p/remora/sdk"
)

func TestParseEnvelope(t *testing.T) {
	long := strings.Repeat("A", MaxPayload+1)
	tests := []struct {
		name    string
		content string
		want    []string
		err     error
	}{
		{"one", `{"v":1,"e":[{"k":"a","d":"hello"}]}`, []string{"hello"}, nil},
		{"packed", `{"v":1,"e":[{"k":"a","d":"x"},{"k":"b","d":"y"}]}`, []string{"x", "y"}, nil},
		{"binary", `{"v":1,"e":[{"b":"AP8="}]}`, []string{"\x00\xff"}, nil},
		{"unknown fields kept for later versions", `{"v":1,"e":[{"d":"x","z":1}],"extra":true}`, []string{"x"}, nil},
		{"not json", `garbage`, nil, errInvalid},
		{"chat message", `{"msgtype":"m.text","body":"hi"}`, nil, errInvalid},
		{"version 2", `{"v":2,"e":[{"d":"x"}]}`, nil, errInvalid},
		{"no envelopes", `{"v":1,"e":[]}`, nil, errInvalid},
		{"e not an array", `{"v":1,"e":"x"}`, nil, errInvalid},
		{"d not a string", `{"v":1,"e":[{"d":5}]}`, nil, errInvalid},
		{"empty part", `{"v":1,"e":[{"k":"a"}]}`, nil, errInvalid},
		{"d and b", `{"v":1,"e":[{"d":"x","b":"AA=="}]}`, nil, errInvalid},
		{"bad base64", `{"v":1,"e":[{"b":"!!"}]}`, nil, errInvalid},
		{"key too long", `{"v":1,"e":[{"k":"` + strings.Repeat("k", 65) + `","d":"x"}]}`, nil, errInvalid},
		{"too many parts", `{"v":1,"e":[` + strings.Repeat(`{"d":"x"},`, maxParts) + `{"d":"x"}]}`, nil, errInvalid},
		{"oversize envelope", `{"v":1,"e":[{"d":"` + long + `"}]}`, nil, errOversize},
		{"oversize content", `{"v":1,"e":[{"d":"` + strings.Repeat("A", maxContentBytes+2000) + `"}]}`, nil, errOversize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseEnvelope([]byte(tt.content))
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d envelopes, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if string(got[i]) != tt.want[i] {
					t.Errorf("envelope %d = %q, want %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestContentRoundTrip(t *testing.T) {
	datas := [][]byte{[]byte("QUJD-_x"), {0, 1, 0xff}, []byte("<&>"), []byte(strings.Repeat("é", 10))}
	var parts []part
	for i, d := range datas {
		parts = append(parts, newPart(strings.Repeat("k", i+1), d))
	}
	b, err := marshalContent(envelopeContent{V: contentVersion, E: parts})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte(`\u003c`)) {
		t.Errorf("content is HTML-escaped: %s", b)
	}
	got, err := parseEnvelope(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range datas {
		if !bytes.Equal(got[i], datas[i]) {
			t.Errorf("part %d: got %q, want %q", i, got[i], datas[i])
		}
	}
}

func TestParseBoard(t *testing.T) {
	tests := []struct {
		name    string
		content string
		withKey bool
		key     string
		value   string
		ok      bool
	}{
		{"state value", `{"v":1,"d":"presence"}`, false, "", "presence", true},
		{"empty value", `{"v":1}`, false, "", "", true},
		{"item", `{"v":1,"k":"key1","d":"x"}`, true, "key1", "x", true},
		{"item without key", `{"v":1,"d":"x"}`, true, "", "", false},
		{"wrong version", `{"v":0,"d":"x"}`, false, "", "", false},
		{"garbage", `[1,2]`, false, "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, v, err := parseBoard([]byte(tt.content), tt.withKey)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if tt.ok && (k != tt.key || string(v) != tt.value) {
				t.Errorf("got (%q, %q), want (%q, %q)", k, v, tt.key, tt.value)
			}
		})
	}
}

func TestParseCursor(t *testing.T) {
	good := cursor{S: "s1_2", E: "$ev", P: 1, M: true}.bytes()
	c, err := parseCursor(good)
	if err != nil || c.S != "s1_2" || c.E != "$ev" || c.P != 1 || !c.M {
		t.Fatalf("parseCursor(%s) = %+v, %v", good, c, err)
	}
	if c, err := parseCursor(nil); c != nil || err != nil {
		t.Errorf("nil cursor: %v, %v", c, err)
	}
	for _, bad := range []string{"", "x", `{"v":1}`, `{"v":2,"s":"a"}`, `[]`} {
		if _, err := parseCursor([]byte(bad)); !errors.Is(err, sdk.ErrCursorInvalid) {
			t.Errorf("parseCursor(%q) = %v, want cursor invalid", bad, err)
		}
	}
}

func TestPowerLevels(t *testing.T) {
	sk := func(s string) *string { return &s }
	pl := func(content string) rawEvent {
		return rawEvent{Type: "m.room.power_levels", StateKey: sk(""), Content: json.RawMessage(content)}
	}
	member := func(u, m string) rawEvent {
		return rawEvent{Type: "m.room.member", StateKey: sk(u), Content: json.RawMessage(`{"membership":"` + m + `"}`)}
	}
	tests := []struct {
		name        string
		state       []rawEvent
		need, alice int
		below       bool
	}{
		{"no power levels: anyone", []rawEvent{member("@alice:x", "join")}, 0, 0, false},
		{"defaults", []rawEvent{pl(`{"users":{"@bob:x":100}}`), member("@alice:x", "join"), member("@bob:x", "join")}, 50, 0, true},
		{"event override", []rawEvent{pl(`{"events":{"` + BoardType("!r:x") + `":0}}`), member("@alice:x", "join")}, 0, 0, false},
		{"state_default", []rawEvent{pl(`{"state_default":10,"users_default":10}`), member("@alice:x", "join")}, 10, 10, false},
		{"left members do not count", []rawEvent{pl(`{"users":{"@alice:x":50}}`), member("@alice:x", "join"), member("@carol:x", "leave")}, 50, 50, false},
		{"string levels (old rooms)", []rawEvent{pl(`{"users":{"@alice:x":"60"},"state_default":"50"}`), member("@alice:x", "join")}, 50, 60, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := parsePowerLevels(tt.state)
			if got := p.stateLevel(BoardType("!r:x")); got != tt.need {
				t.Errorf("stateLevel = %d, want %d", got, tt.need)
			}
			if got := p.userLevel("@alice:x"); got != tt.alice {
				t.Errorf("userLevel(alice) = %d, want %d", got, tt.alice)
			}
			if got := p.anyoneBelow(BoardType("!r:x")); got != tt.below {
				t.Errorf("anyoneBelow = %v, want %v", got, tt.below)
			}
		})
	}
}

// TestDescribeRoomMembersMayPublish: what `remora channel add` offers to
// change depends on the members' level, not the account's own.
func TestDescribeRoomMembersMayPublish(t *testing.T) {
	sk := func(s string) *string { return &s }
	pl := func(content string) rawEvent {
		return rawEvent{Type: "m.room.power_levels", StateKey: sk(""), Content: json.RawMessage(content)}
	}
	joined := func(u string) rawEvent {
		return rawEvent{Type: "m.room.member", StateKey: sk(u), Content: json.RawMessage(`{"membership":"join"}`)}
	}
	tests := []struct {
		name           string
		state          []rawEvent
		mayPublish     bool
		own, board     int
		canSetPower    bool
		membersAtLevel int
	}{
		{"a new room: the admin may, members may not", []rawEvent{pl(`{"users":{"@admin:x":100}}`), joined("@admin:x"), joined("@bob:x")}, false, 100, 50, true, 0},
		{"board opened to everyone", []rawEvent{pl(`{"users":{"@admin:x":100},"events":{"` + BoardType("!r:x") + `":0}}`), joined("@admin:x"), joined("@bob:x")}, true, 100, 0, true, 0},
		{"all joined may, later members may not", []rawEvent{pl(`{"users":{"@admin:x":100,"@bob:x":50}}`), joined("@admin:x"), joined("@bob:x")}, false, 100, 50, true, 0},
		{"members' default high enough", []rawEvent{pl(`{"users_default":50}`), joined("@admin:x"), joined("@bob:x")}, true, 50, 50, true, 50},
		{"a plain member of a locked room", []rawEvent{pl(`{"users":{"@owner:x":100}}`), joined("@owner:x"), joined("@admin:x")}, false, 0, 50, false, 0},
		{"no power levels at all", []rawEvent{joined("@admin:x")}, true, 0, 0, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := describeRoom("!r:x", tt.state, "@admin:x")
			if r.MembersMayPublish != tt.mayPublish || r.OwnLevel != tt.own || r.BoardLevel != tt.board || r.CanSetPower != tt.canSetPower || r.MemberLevel != tt.membersAtLevel {
				t.Errorf("describeRoom = %+v; want members may publish %v, own %d, board %d, can set power %v, member level %d",
					r, tt.mayPublish, tt.own, tt.board, tt.canSetPower, tt.membersAtLevel)
			}
		})
	}
}

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name, config string
		ok           bool
	}{
		{"minimal", `{"homeserver":"https://m.example","user":"@a:example","room":"!r:example"}`, true},
		{"alias", `{"homeserver":"http://127.0.0.1:1","user":"@a:example","room":"#circle:example"}`, true},
		{"empty", ``, false},
		{"no homeserver", `{"user":"@a:example","room":"!r:example"}`, false},
		{"ftp homeserver", `{"homeserver":"ftp://x","user":"@a:example","room":"!r:example"}`, false},
		{"bad user", `{"homeserver":"https://m.example","user":"alice","room":"!r:example"}`, false},
		{"bad room", `{"homeserver":"https://m.example","user":"@a:example","room":"circle"}`, false},
		{"unknown field", `{"homeserver":"https://m.example","user":"@a:example","room":"!r:example","pasword":"x"}`, false},
		{"bad duration", `{"homeserver":"https://m.example","user":"@a:example","room":"!r:example","backfill":"forever"}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig(json.RawMessage(tt.config), true)
			if tt.ok && err != nil {
				t.Fatal(err)
			}
			if !tt.ok && !errors.Is(err, sdk.ErrBadConfig) {
				t.Fatalf("err = %v, want bad config", err)
			}
		})
	}
}

// FuzzParseEnvelope: no input panics, and what parses re-encodes to the
// same envelopes.
func FuzzParseEnvelope(f *testing.F) {
	f.Add([]byte(`{"v":1,"e":[{"k":"a","d":"hello"}]}`))
	f.Add([]byte(`{"v":1,"e":[{"b":"AP8="},{"d":"x"}]}`))
	f.Add([]byte(`{"msgtype":"m.text","body":"hi"}`))
	f.Add([]byte(`{"v":1,"e":[{"d":5}]}`))
	f.Add([]byte(`{"v":1,"e":null}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, content []byte) {
		envs, err := parseEnvelope(content)
		if err != nil {
			if !errors.Is(err, errInvalid) && !errors.Is(err, errOversize) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		parts := make([]part, len(envs))
		for i, e := range envs {
			if payloadLen(e) > MaxPayload {
				t.Fatalf("accepted an envelope of %d", payloadLen(e))
			}
			parts[i] = newPart("", e)
		}
		b, err := marshalContent(envelopeContent{V: contentVersion, E: parts})
		if err != nil {
			t.Fatal(err)
		}
		again, err := parseEnvelope(b)
		if err != nil {
			t.Fatalf("re-encoded content does not parse: %v", err)
		}
		for i := range envs {
			if !bytes.Equal(envs[i], again[i]) {
				t.Fatalf("part %d changed on round trip", i)
			}
		}
	})
}

func FuzzParseBoard(f *testing.F) {
	f.Add([]byte(`{"v":1,"k":"key1","d":"x"}`), true)
	f.Add([]byte(`{"v":1,"b":"AP8="}`), false)
	f.Fuzz(func(t *testing.T, content []byte, withKey bool) {
		k, _, err := parseBoard(content, withKey)
		if err == nil && withKey && k == "" {
			t.Fatal("board item without key accepted")
		}
	})
}

func FuzzParseCursor(f *testing.F) {
	f.Add(cursor{S: "s1", E: "$e", P: 2, M: true}.bytes())
	f.Add([]byte(`{"v":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseCursor(b)
		if err != nil && !errors.Is(err, sdk.ErrCursorInvalid) {
			t.Fatalf("untyped error %v", err)
		}
		if err == nil && b != nil && c.S == "" {
			t.Fatal("cursor without sync token accepted")
		}
	})
}

// TestEventTypesNameNothing: the event types a room's envelopes and board
// use name neither the software nor anything shared by all rooms: each is
// derived from the room ID (a homeserver cannot find every circle's room
// with one query for a fixed type).
func TestEventTypesNameNothing(t *testing.T) {
	a, b := typesFor("!abc:example.org"), typesFor("!xyz:example.org")
	for _, typ := range []string{a.envelope, a.board, a.boardItem, b.envelope, b.board, b.boardItem} {
		lower := strings.ToLower(typ)
		if strings.Contains(lower, "remora") || strings.HasPrefix(lower, "org.") || strings.HasPrefix(lower, "m.") {
			t.Errorf("event type %q names the software or a shared namespace", typ)
		}
	}
	if a.envelope == b.envelope || a.board == b.board || a.boardItem == b.boardItem {
		t.Errorf("two rooms share event types: %+v, %+v", a, b)
	}
	if BoardType("!abc:example.org") != a.board {
		t.Error("BoardType differs from the room's board type")
	}
}
