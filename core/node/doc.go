// Package node is the remora daemon's core: it joins identity, circles,
// envelopes, the durable store, the libp2p transport and the channels into a
// node that delivers every message exactly once to the app.
//
// # Paths
//
// A message goes out on the live path first (a libp2p stream, whose ack
// means the recipient stored it durably), and to the channels when no live
// path exists or no ack comes in time: one broadcast envelope per channel for
// a group message, one direct envelope per recipient otherwise. A recipient
// that reads a message from a channel answers with a signed ack (a direct
// envelope of kind ack, batched), on the live path if it has one. Every copy
// of a message carries the same message ID, so the recipient's inbox insert,
// which dedupes by (sender, message ID) in the same transaction, stores it
// once; the app reads the inbox through its own acked cursor.
//
// # Presence
//
// Each node publishes a signed presence record, sealed as a broadcast
// envelope, to every channel of each circle on a jittered cadence: to the
// channel's board under a key derived from the epoch secret where the
// channel has one, else to its log (a queued record is replaced by a newer
// one). Records on channels never hold LAN addresses; on the live path
// members exchange full records (peer exchange). Received records feed the
// transport's address book, and the node dials members it has no live path
// to.
//
// # Joining
//
// A joiner holds no epoch secret, so its join request and the inviter's
// welcome cannot carry a routing tag. They travel on the invite's rendezvous
// channel in a frame of their own: version (1) ‖ frame type (1: 0x10 join
// request, 0x11 welcome) ‖ the sealed blob from package circle (HPKE to the
// recipient's box key, MACed with the invite token), 0x12 a part of a
// larger frame, 0x13 a refusal. Only a node with an open invite or a
// pending join tries to open such frames; the frame type in clear reveals
// to the service that a join happened, nothing more. Parts are unsigned
// and come from anyone who can post, so they are held within byte bounds:
// 16 KiB a part, 256 KiB of unfinished frames per posting source, 1 MiB in
// all (join.go).
//
// # Receiving
//
// Every kind of envelope is deduplicated by (sender, message ID) before it
// is handled: chat in the inbox transaction, the control kinds in the same
// durable set (recv.go); presence by its record's own sequence. Envelopes
// that cannot open yet (key not arrived, fragments of an unfinished
// message) are held in the store within quotas per sender and in all,
// counted in bytes, and retried page by page.
//
// The inviter answers nothing until an admin approves the request (the
// pending request is kept in the circle's state; the joiner's side of the
// join in the store, so both survive restarts). On a removal the node cuts
// the removed device off at once: connections, relay, presence, held items,
// pending outbox; see docs/circle.md, "Members and removal".
package node
