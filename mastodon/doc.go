// Package mastodon is the remora adapter for Mastodon-compatible servers
// (Mastodon 4.x, GoToSocial): one account on one server is a channel.
//
// The server's software is read from the instance (source_url, version):
// Mastodon, GoToSocial, or other (treated like GoToSocial where they differ).
//
// Envelopes travel as direct-visibility statuses that mention the circle
// members' accounts and hold nothing but those mentions and the armored
// envelope, posted as text/plain (a Markdown account would otherwise alter
// the armor). The channel's max payload is the instance's max_characters
// minus the mentions: Mastodon counts a mention as its "@username" only,
// other servers count "@username@domain" as written. Core fragments larger
// envelopes.
//
// Subscribe reads mention notifications: pushed over the streaming
// websocket (stream=user; the advertised streaming URL unless it names the
// server's own host or fails, then the server's URL), caught up and, when
// streaming fails, polled through GET /api/v1/notifications with min_id.
// The catch-up runs after the stream opens and once more at its first
// event or two seconds on, whichever is first: a server gives a new stream
// events a moment after the upgrade, and a notification made in between
// would be in neither. A
// status's text is its source where the server sends it (status.text),
// else its HTML content as text. The cursor is the highest
// notification ID delivered plus a window of the last notification and
// status IDs: on resume the adapter re-reads from the oldest one in the
// window and skips what the window holds, so a notification whose ID was
// assigned before the cursor but committed (or federated) after it is not
// lost, and nothing in the window is delivered twice.
//
// Publish sends the item's idempotency key as the Idempotency-Key header
// (Mastodon keeps it an hour; GoToSocial ignores it), keeps a journal of
// keys and status IDs in the state directory, and, before retrying a key
// whose answer it never got and the server will not recognise (any key on
// GoToSocial, one older than the hour on Mastodon), looks for the item
// among the account's own recent statuses: the ciphertext itself is the
// mark, so no key is ever posted. The declared level is a one-hour window.
//
// Rate limits: X-RateLimit-* headers are read on every response, per limit
// (on Mastodon: general, statuses family, delete throttle; elsewhere one
// bucket, per client IP on GoToSocial); Publish stops short of the last few
// requests of a window (reads keep working), and a 429 becomes
// sdk.RateLimited with the time until the reset (Retry-After, else
// X-RateLimit-Reset).
//
// RegisterApp, AuthCodeURL and ExchangeCode implement `remora channel add
// mastodon`: the OAuth authorization-code flow with the out-of-band
// redirect, which GoToSocial requires (it has no password grant).
//
// docs/channel-mastodon.md has the configuration, the flow, what the server
// operator sees, and what the test fake (mastodontest) does not model.
package mastodon
