package channeltest

import (
	"context"
	"testing"

	"github.com/remora-p2p/remora/sdk/channeltest/faultproxy"
)

// A Harness may implement these optional interfaces to reach the cases
// that need more of the backend. A case whose hook is missing is skipped
// with the reason logged; every built-in adapter's harness implements the
// ones its service allows.

// StateDirs is implemented by a harness that can tell the kit each
// member's state directory (the ConfigureRequest.StateDir its Open
// passes), for the LostState and CursorAhead cases: the kit wipes it, or
// puts back an older copy, between a Close and the next Open.
type StateDirs interface {
	StateDir(member int) string
}

// Proxied is implemented by a harness that puts the service behind
// fault-injecting proxies (faultproxy.New per service address, the channel
// configured with the proxy's address), for the Outage and HalfFail cases:
// the kit takes the service away and brings it back, and cuts a publish
// part way through. Proxies returns every proxy between the members and the
// service (one for an HTTP service; IMAP and SMTP for mail).
type Proxied interface {
	Proxies() []*faultproxy.Proxy
}

// Planter is implemented by a harness that can put an item on the channel
// as member through the backend, the way another client of the service
// would (another device of the member's account, a script with its
// token), without backdating it: where the service orders items itself (a
// Matrix room, a Mastodon account's notifications) the item goes after
// those already there. The hostile cases (Oversized, JunkFlood) plant
// through it, and through InsertBackdated when the harness has no Planter.
// Plant returns an error with sdk.CodeTooLarge when the service refuses an
// item that large.
type Planter interface {
	Plant(ctx context.Context, t *testing.T, member int, data []byte) error
}
