// Package git makes a shared git repository into a remora channel, using
// go-git only (no git binary; file:// is served by go-git's in-process
// server).
//
// # Layout
//
// Everything lives below one ref namespace (Config.Namespace, default
// refs/heads/remora/); the rest of the repository is never read or written.
// Each member (one channel instance) writes only its own ref, named by an
// opaque random ID persisted in the state dir (Config.Member), so pushes of
// different members never race. A member's tree holds
//
//	log/<YYYYMMDDHH>/<idempotency key>   one envelope per file, bucketed by UTC hour
//	board/<base64url(board key)>         the latest value of one board key
//
// File contents are the opaque envelope bytes. Commits carry a neutral
// author and committer ("remora <remora@remora.invalid>") and the message
// "remora"; no peer ID, name or plaintext appears in refs, paths or commit
// metadata.
//
// # Publish
//
// Publish queues items; one flusher makes at most one commit per flush
// interval with everything queued and pushes it (fast-forward) to the own
// ref. Publish returns when the push holding an item succeeded, or with a
// per-item error. While the remote is unreachable the flusher retries with
// jittered exponential backoff (1 s doubling to 1 min); a waiting Publish
// fails with CodeUnavailable at its deadline and the item stays queued. A
// rejected fast-forward (the own ref was rewritten elsewhere) resyncs from
// the remote and retries. An idempotency key already pushed (and retained)
// or queued is not written twice.
//
// # Subscribe and cursor
//
// Subscribe fetches the namespace (PollMin, doubling to PollMax while idle,
// ±20 % jitter) and delivers, per member ref in name order, the log files the
// ref gained since the cursor in path order. The cursor maps each member ref
// to the last fully delivered commit, plus (mid-step) the target commit and
// the last delivered path, so a restart resumes exactly. A ref in the cursor
// that was deleted, or whose cursor commit is no longer an ancestor of the
// tip (force push, Compact), is CodeCursorInvalid; the host rescans from nil
// and dedupes. Entries outside the layout, non-regular files, files larger
// than MaxPayload and expired buckets are skipped and counted in Health.
//
// # Retention
//
// Each flush also drops the member's own log buckets older than the
// retention; Compact squashes the own ref to one parentless commit.
// docs/channel-git.md has the configuration table and growth figures.
package git
