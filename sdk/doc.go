// Package sdk is what an adapter author imports to make a service into a
// remora channel.
//
// A channel is one (service endpoint, account): one mail account, one Matrix
// account and room, one git repository, one Mastodon account, one folder. A
// channel carries opaque, already sealed envelopes for one or more circles;
// the adapter never sees keys or plaintext, and never needs to know which
// circle an envelope belongs to.
//
// An adapter implements [Adapter] (static [Info] plus Configure, which returns
// a [Channel]) and calls [Serve] from its main function. One adapter process
// hosts every channel instance of its kind. The required [Channel] interface is
// small: Capabilities, Publish, Subscribe and Close. Optional extras are found
// by type assertion: [Board] (latest value per key), [Deleter] (garbage
// collection) and [Healther] (counters and state for `remora doctor`).
//
// Errors that the host must act on are [*Error] values with a [Code]; they keep
// their code, message and retry-after across the process boundary, so the host
// can test them with errors.Is against the sentinels ([ErrRateLimited], ...)
// and read details with errors.As.
//
// The conformance kit in sdk/channeltest checks an implementation against its
// real backend. docs/adapter-protocol.md specifies the wire contract for authors
// writing an adapter in another language (docs/protocol.md is the envelope
// format, which adapters never parse); docs/adapter-guide.md walks through
// examples/httpfile, a complete adapter in under 150 lines, and the dir
// adapter. The helpers every adapter needs are here: [Lifecycle] (Close
// cancels calls in flight), [PublishEach], [ValidKey] and [CheckKey] (the key
// rule), [HTTPError], [DecodeConfig], [Sleep] and [Main]; sdk/seqindex numbers
// the items of a service that can only be listed.
package sdk
