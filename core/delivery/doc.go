// Package delivery moves messages from the durable outbox to their
// recipients: the live path first, the channels when no live path exists or
// no ack arrives in time, with per-channel pacing.
//
// Pacing belongs to core, not adapters: each channel has a Pacer with a
// token bucket set from the service's published rate limit and paused by
// rate-limit errors (retry-after), and priority queues — acks and punch
// requests, then presence, then bulk messages. A queued presence record is
// replaced by a newer one.
package delivery
