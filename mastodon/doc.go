// Package mastodon is the remora adapter for Mastodon-compatible servers
// (Mastodon 4.x, GoToSocial): one account on one server is a channel.
//
// Envelopes travel as direct-visibility statuses that mention the circle
// members' accounts and hold nothing but those mentions and the armored
// envelope. The channel's max payload is the instance's max_characters
// minus the mentions, counted by Mastodon's rule (a mention counts only its
// "@username", a URL 23), so core fragments larger envelopes.
//
// Subscribe reads mention notifications: pushed over the streaming
// websocket (stream=user), caught up and, when streaming fails, polled
// through GET /api/v1/notifications with min_id. The cursor is the highest
// notification ID delivered plus a window of the last notification and
// status IDs: on resume the adapter re-reads from the oldest one in the
// window and skips what the window holds, so a notification whose ID was
// assigned before the cursor but committed (or federated) after it is not
// lost, and nothing in the window is delivered twice.
//
// Publish sends the item's idempotency key as the Idempotency-Key header
// (servers keep it about an hour; the declared level is a one-hour window),
// keeps a journal of keys and status IDs in the state directory, and,
// before retrying a key first tried longer ago than the server's window,
// looks for the item among the account's own recent statuses: the
// ciphertext itself is the mark, so no key is ever posted.
//
// Rate limits: X-RateLimit-* headers are read on every response, per limit
// (general, statuses family, delete throttle); Publish stops short of the
// last few requests of a window (reads keep working), and a 429 becomes
// sdk.RateLimited with the time until the reset.
//
// RegisterApp, AuthCodeURL and ExchangeCode implement `remora channel add
// mastodon`: the OAuth authorization-code flow with the out-of-band
// redirect, which GoToSocial requires (it has no password grant).
//
// docs/channel-mastodon.md has the configuration, the flow, what the server
// operator sees, and what the test fake (mastodontest) does not model.
package mastodon
