// Package mastodontest is a fake Mastodon server for tests, written from
// Mastodon's API documentation (docs.joinmastodon.org, Mastodon 4.x).
//
// It runs on an httptest server on 127.0.0.1 and models what the remora
// adapter depends on:
//
//   - apps and OAuth: POST /api/v1/apps, the authorization-code flow with the
//     out-of-band redirect urn:ietf:wg:oauth:2.0:oob (the "browser" step is
//     [Server.Authorize]), POST /oauth/token; like GoToSocial it refuses the
//     password grant;
//   - accounts: verify_credentials, lookup, an account's statuses;
//   - statuses with visibility rules: a direct status is visible only to its
//     author and the accounts it mentions; mentions are parsed from the text
//     as Mastodon does and rendered as HTML (<p>, h-card links, <br />);
//   - character counting: code points, every URL counts 23, a mention counts
//     only "@username"; over the instance's max_characters is a 422;
//   - the Idempotency-Key header: the same key from the same account within
//     one hour returns the first status;
//   - snowflake-like status IDs (milliseconds << 16 | sequence), so a
//     federated status created earlier but arriving late ([Server.Federate])
//     sorts below statuses already seen; notification IDs are a server-local
//     sequence, in arrival order;
//   - notifications with types[]/exclude_types[], max_id/since_id/min_id,
//     limit, and Link headers (next: max_id, prev: min_id);
//   - /api/v2/instance and /api/v1/instance with
//     configuration.statuses.max_characters;
//   - rate limits: X-RateLimit-Limit/Remaining/Reset on every authenticated
//     API response, 429 once the budget of the window is spent; the
//     statuses family (300 per 3 h, reported on POST /api/v1/statuses) and
//     the delete throttle (30 per 30 min, reported on its 429);
//   - status deletion (its notifications go with it, a "delete" event is
//     streamed);
//   - the streaming websocket GET /api/v1/streaming with stream=user
//     ("notification", "update", "delete") and stream=direct
//     ("conversation", "delete"); [Server.DropStreams] cuts them.
//
// What it does not model is listed in docs/channel-mastodon.md: follows
// and private visibility, real federation, media, edits, filters, per-IP
// limits, and streaming heartbeats.
package mastodontest
