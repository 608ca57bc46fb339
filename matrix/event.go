package matrix

import (
	"bytes"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// eventTypes are the event types of one room. They are derived from the
// room ID, so every member's adapter agrees on them without configuration,
// nothing in the room names the software, and no type is shared by all the
// rooms that carry envelopes (a fixed type would let a homeserver find them
// all with one query). Someone who knows this derivation and the room ID
// can still recompute them (docs/threat-model.md).
type eventTypes struct {
	// envelope carries one or more envelopes as a room message event.
	envelope string
	// board is the room state event holding one board value; the state key
	// is the board key.
	board string
	// boardItem is the message event a member without the power to send
	// state events publishes a board value as (the log fallback).
	boardItem string
}

// typesFor returns the event types of room: a namespace of 8 lowercase
// base32 characters of SHA-256("remora/v1/matrix-types" ‖ 0x00 ‖ room ID),
// then ".e", ".b" or ".i".
func typesFor(room string) eventTypes {
	h := sha256.Sum256([]byte("remora/v1/matrix-types\x00" + room))
	ns := strings.ToLower(base32.StdEncoding.EncodeToString(h[:5]))
	return eventTypes{envelope: ns + ".e", board: ns + ".b", boardItem: ns + ".i"}
}

// BoardType returns the state event type board values have in room (a room
// ID): what the room's power levels must allow members to send for the
// board to use state events.
func BoardType(room string) string { return typesFor(room).board }

// The content format; doc.go describes it and the event types.
const (
	contentVersion = 1
	// MaxPayload is the largest item, in code points of armored text.
	MaxPayload = 40000
	// maxContentBytes bounds the JSON content of one event. Dendrite and
	// Synapse refuse events over 65,536 bytes including the signed envelope
	// the server adds (~1 KiB); this leaves a wide margin.
	maxContentBytes = 56 * 1024
	// maxParts bounds the envelopes packed into one event.
	maxParts = 64
	// maxKeyLen is the longest idempotency key the contract allows.
	maxKeyLen = 64
)

// part is one envelope inside an envelope event: text in D, or
// bytes that are not UTF-8 in B (standard base64).
type part struct {
	K string `json:"k,omitempty"`
	D string `json:"d,omitempty"`
	B string `json:"b,omitempty"`
}

// envelopeContent is the content of an envelope event.
type envelopeContent struct {
	V int    `json:"v"`
	E []part `json:"e"`
}

// boardContent is the content of a board state event (no K) or a board item
// message event (K is the board key).
type boardContent struct {
	V int    `json:"v"`
	K string `json:"k,omitempty"`
	D string `json:"d,omitempty"`
	B string `json:"b,omitempty"`
}

var (
	errInvalid  = errors.New("not a valid envelope event")
	errOversize = errors.New("envelope event over the size limit")
)

func newPart(key string, data []byte) part {
	if utf8.Valid(data) {
		return part{K: key, D: string(data)}
	}
	return part{K: key, B: base64.StdEncoding.EncodeToString(data)}
}

// marshalContent encodes v without HTML escaping (so '<' stays one byte).
func marshalContent(v any) (json.RawMessage, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// payloadLen is the length of data as MaxPayload counts it.
func payloadLen(data []byte) int {
	if utf8.Valid(data) {
		return utf8.RuneCount(data)
	}
	return base64.StdEncoding.EncodedLen(len(data))
}

func decodeData(d, b string, allowEmpty bool) ([]byte, error) {
	switch {
	case d != "" && b != "":
		return nil, fmt.Errorf("%w: both d and b set", errInvalid)
	case b != "":
		data, err := base64.StdEncoding.DecodeString(b)
		if err != nil {
			return nil, fmt.Errorf("%w: b: %v", errInvalid, err)
		}
		return data, nil
	case d != "" || allowEmpty:
		return []byte(d), nil
	}
	return nil, fmt.Errorf("%w: empty envelope", errInvalid)
}

// parseEnvelope parses the content of an envelope event into its
// envelopes. It is the parser of outside input: anyone in the room can send
// any content under our event type.
func parseEnvelope(content []byte) ([][]byte, error) {
	if len(content) > maxContentBytes+1024 {
		return nil, errOversize
	}
	var c envelopeContent
	if err := json.Unmarshal(content, &c); err != nil {
		return nil, fmt.Errorf("%w: %v", errInvalid, err)
	}
	if c.V != contentVersion {
		return nil, fmt.Errorf("%w: version %d", errInvalid, c.V)
	}
	if len(c.E) == 0 || len(c.E) > maxParts {
		return nil, fmt.Errorf("%w: %d envelopes", errInvalid, len(c.E))
	}
	out := make([][]byte, len(c.E))
	for i, p := range c.E {
		if len(p.K) > maxKeyLen {
			return nil, fmt.Errorf("%w: key of %d characters", errInvalid, len(p.K))
		}
		data, err := decodeData(p.D, p.B, false)
		if err != nil {
			return nil, err
		}
		if payloadLen(data) > MaxPayload {
			return nil, errOversize
		}
		out[i] = data
	}
	return out, nil
}

// parseBoard parses board content; withKey says K must be set (board.item).
func parseBoard(content []byte, withKey bool) (key string, value []byte, err error) {
	if len(content) > maxContentBytes+1024 {
		return "", nil, errOversize
	}
	var c boardContent
	if err := json.Unmarshal(content, &c); err != nil {
		return "", nil, fmt.Errorf("%w: %v", errInvalid, err)
	}
	if c.V != contentVersion {
		return "", nil, fmt.Errorf("%w: version %d", errInvalid, c.V)
	}
	if withKey && c.K == "" {
		return "", nil, fmt.Errorf("%w: board item without key", errInvalid)
	}
	value, err = decodeData(c.D, c.B, true)
	if err != nil {
		return "", nil, err
	}
	if payloadLen(value) > MaxPayload {
		return "", nil, errOversize
	}
	return c.K, value, nil
}
