package api

import "time"

// RosterHealth is what `remora doctor` shows of a circle's roster log
// (docs/circle.md): its size, the operations waiting for their parents, and
// whether the roster holds this device's current box prekey (which members
// seal direct messages to).
type RosterHealth struct {
	Ops           int       `json:"ops"`
	Waiting       int       `json:"waiting"`
	OldestWaiting time.Time `json:"oldest_waiting,omitzero"`
	// Member is false once this device has been removed.
	Member bool `json:"member"`
	// PrekeyCreated is when the prekey the roster holds for this device
	// was made; PrekeyCurrent says whether it is the keyring's current one.
	PrekeyCreated time.Time `json:"prekey_created,omitzero"`
	PrekeyCurrent bool      `json:"prekey_current"`
	// KeyCreated is when the keyring's current prekey was made.
	KeyCreated time.Time `json:"key_created,omitzero"`
}
