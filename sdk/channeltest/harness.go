package channeltest

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/remora-p2p/remora/sdk"
)

// Harness connects the kit to one adapter and its real backend. Run calls
// the harness constructor once per case, so each case may get a fresh
// folder, room, repository or mailbox; the constructor registers its own
// cleanup with t.Cleanup.
type Harness interface {
	// Open opens the channel as member m (0 <= m < Members()) by calling
	// a.Configure. a is the adapter under test: the in-process value given
	// to Run, or the host-side client of the adapter subprocess. Opening a
	// member again after Close, with the same config and state dir, is a
	// restart. The kit closes every channel it opens.
	Open(ctx context.Context, t *testing.T, a sdk.Adapter, member int) (sdk.Channel, error)
	// Members is the number of accounts available: 1 for dir, 2 or more
	// for mail, Matrix and Mastodon.
	Members() int
	// Address is member's service address for PublishItem.To on
	// Addressed channels ("" when not addressed).
	Address(member int) string
	// InvalidateCursor makes every cursor issued so far unusable, the way
	// the service does it in the wild: force-push, UIDVALIDITY change, a
	// wiped folder. Return sdk.ErrUnsupported to skip the case.
	InvalidateCursor(ctx context.Context, t *testing.T) error
	// InsertBackdated puts data on the channel as member, directly through
	// the backend, as an item that sorts before the ones already delivered
	// (a late federated status, a late-synced file, an older commit).
	// Return sdk.ErrUnsupported to skip the case.
	InsertBackdated(ctx context.Context, t *testing.T, member int, data []byte) error
}

// Option tunes Run for a backend. The defaults suit a local backend that
// answers in milliseconds; slow services (mail, Matrix, git over ssh) want
// longer timeouts and fewer items.
type Option func(*config)

type config struct {
	timeout    time.Duration
	settle     time.Duration
	items      int
	redelivery int
	skip       map[string]string
	command    func() *exec.Cmd
	leak       []goleak.Option
	holdsOne   string // why the adapter holds one oversized item whole
}

func defaults() config {
	return config{
		timeout: 2 * time.Minute,
		settle:  time.Second,
		items:   16,
		skip:    map[string]string{},
	}
}

// Timeout bounds each case (default 2m). Waits for deliveries inside a
// case use what is left of it.
func Timeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// Settle is how long the kit keeps listening after the expected items
// arrived, to catch duplicates and items that must not arrive (default 1s;
// the kit uses at least twice the channel's PollInterval).
func Settle(d time.Duration) Option { return func(c *config) { c.settle = d } }

// Items is the number of items in each published batch (default 16). Each
// case publishes at most a few batches of this size.
func Items(n int) Option { return func(c *config) { c.items = n } }

// Redelivery is how many items delivered before a cursor the adapter may
// deliver again when resuming from that cursor (default 0), for adapters
// whose cursor keeps an overlap window (Mastodon's since_id overlap).
func Redelivery(n int) Option { return func(c *config) { c.redelivery = n } }

// Skip skips the named case (as it appears in the subtest name, e.g.
// "Board") and logs reason. Prefer returning sdk.ErrUnsupported from a hook
// or declaring the capability honestly; Skip is for backends that truly
// cannot run a case here.
func Skip(name, reason string) Option { return func(c *config) { c.skip[name] = reason } }

// IgnoreGoroutines passes goleak options (goleak.IgnoreTopFunction, ...)
// to the Leaks case, for goroutines a third-party library keeps by design
// beyond the channel's Close. Each one needs a reason in a comment.
func IgnoreGoroutines(opts ...goleak.Option) Option {
	return func(c *config) { c.leak = append(c.leak, opts...) }
}

// HoldsOneItem declares, with its reason, that the adapter holds one
// planted item whole, however large, while reading past it (git: go-git
// inflates every object of a fetched pack once to index it, bounded by
// max_fetch_bytes). Oversized then allows the heap to grow by twice its
// largest item instead of once, and logs reason: a second copy still fails.
func HoldsOneItem(reason string) Option { return func(c *config) { c.holdsOne = reason } }

// Run runs every conformance case against adapter as subtests of t.
//
// By default the cases call adapter in-process. With the Subprocess option,
// or when REMORA_ADAPTER_BIN names an adapter binary, they run against the
// adapter as a subprocess through sdk/host instead, and adapter is used
// only for Info.
func Run(t *testing.T, adapter sdk.Adapter, newHarness func(t *testing.T) Harness, opts ...Option) {
	t.Helper()
	cfg := defaults()
	for _, o := range opts {
		o(&cfg)
	}
	run(t, adapter, newHarness, cfg)
}
