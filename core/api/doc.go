// Package api is the daemon's local API for apps and the CLI: HTTP/1.1 with
// JSON bodies on a unix socket (mode 0600, in the state directory), so curl
// is a complete client:
//
//	curl --unix-socket ~/.local/state/remora/api.sock http://remora/v1/status
//
// Endpoints (docs/api.md has examples for each):
//
//	GET  /v1/status                      identity, listen addresses, reachability, NAT hint, ready
//	POST /v1/send                        {"circle","to":[peer IDs] (empty: everyone),"text"|"body"(base64)} → {"id"}
//	GET  /v1/messages?after=N&wait=30s   inbox entries with seq > N (long poll up to wait)
//	GET  /v1/messages/stream?after=N     the same as a stream of JSON lines
//	POST /v1/messages/ack                {"seq":N}: the app has handled everything up to N
//	GET  /v1/peers                       per peer: path now, last seen, which box found it
//	GET  /v1/channels                    per channel: adapter, health, advice
//	GET  /v1/events?after=N&wait=30s     undeliverable, needs-user-action, ...
//	POST /v1/circles                     {"name"} → circle
//	POST /v1/invites                     {"circle","hint","in_person"} → invite text
//	POST /v1/join                        {"invite"} → join status: pending, with the safety code
//	GET  /v1/joins/{id}?wait=30s         join status: pending|joined|refused
//	GET  /v1/pending?circle=ID           join requests waiting for an admin, with safety codes
//	POST /v1/pending/approve|deny        {"circle","who"}: admit or refuse a pending device
//	GET  /v1/members?circle=ID           members: role, added by whom and when, last seen
//	POST /v1/members/remove              {"circle","who"}: remove a member or one device (admins)
//	POST /v1/members/role                {"circle","who","role"}: admin|member (admins)
//	POST /v1/circles/leave               {"circle"}: this device leaves
//
// Delivery to the app is exactly once through the acked cursor: every inbox
// entry has a sequence number; an app that crashes before acking sees the
// unacked entries again from its cursor (GET /v1/messages with no "after"
// starts at the acked cursor), and never sees an acked one again.
//
// Errors are JSON {"error": "...", "advice": "..."} with a 4xx/5xx status.
package api
