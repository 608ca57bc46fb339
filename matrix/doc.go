// Package matrix is the remora channel adapter for a Matrix room, built on
// maunium.net/go/mautrix.
//
// A channel is one (homeserver, account, room). Every member of a circle
// configures its own account and points it at the shared room.
//
// # Log
//
// Event types are per room: a namespace derived from the room ID (typesFor),
// so nothing in the room names the software and no type is shared by every
// room that carries envelopes. Each envelope is a room message event of the
// room's envelope type, so ordinary clients do not show it:
//
//	{"v": 1, "e": [{"k": "<idempotency key>", "d": "<armored envelope>"}]}
//
// "d" holds text; bytes that are not UTF-8 go base64 in "b" instead. While
// the homeserver is rate limiting us (M_LIMIT_EXCEEDED), Publish packs up to
// 64 envelopes into one event ("e" has several parts, at most 56 KiB of
// content, well under the 64 KiB event limit of Dendrite and Synapse); an
// envelope's ID is then "$event/N". The transaction ID of a send derives
// from the idempotency key(s), so a retried send is deduplicated by the
// homeserver (txnIds are per device, and the device is kept across
// restarts).
//
// Subscribe long-polls /sync with a filter limited to the room and its
// envelope type. The cursor is JSON: the sync token after the batch,
// the last delivered event and part, and whether events between them may
// still be undelivered. A nil cursor, a gap (a "limited" timeline) or a
// resume in the middle of a batch is filled by paging /messages backwards
// from the sync token down to the last delivered event (or, for a nil
// cursor, down to Config.Backfill). Events of our type whose content is not
// valid are ignored and counted (Health counters ignored_invalid,
// ignored_oversize); other event types never reach the adapter: the
// server-side filter drops them.
//
// # Board
//
// A board value is the room's board state event with state_key = the board
// key and content {"v": 1, "d": "<value>"}: a new member reads every
// member's presence with one GET /state. A member whose power level is below
// what the room requires for that state event (50 in most rooms) publishes
// board item message events {"v": 1, "k": key, "d": value}
// instead; Get merges those of the last Config.BoardWindow, newest value per
// key wins, and Health reports the fallback. Capabilities.Board stays true.
//
// Board writes are also pushed: /sync asks for the board state type too,
// and a board state event that arrives is delivered through Subscribe (its
// value, as Get would return it), so members hold a new presence record at
// once rather than at their next board read. It does not move the cursor's
// envelope position; after a restart it may come again (core dedupes). A
// lone event ends the waiting /sync at once; Config.SyncMinInterval (2 s)
// makes a burst, such as a round of every member's presence, one or two
// requests.
//
// # Delete
//
// Delete redacts our own events; a packed event is redacted once all its
// parts were deleted. Redaction removes content from the room for members
// and new joiners; servers may keep the original for a while.
//
// # Encrypted rooms
//
// Rooms with m.room.encryption are refused at Configure: envelopes are
// already end-to-end encrypted and signed by remora, and Megolm would need
// key sharing between every member's device for no gain.
package matrix
