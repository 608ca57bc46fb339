package mailbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// WakerOptions configure a Waker.
type WakerOptions struct {
	Backend Backend
	// MinInterval is the least time between two wake-ups of one device
	// (default 1 minute): a burst of messages makes one wake-up.
	MinInterval time.Duration
	// Client posts to push endpoints (default: 10 s timeout).
	Client *http.Client
	Now    func() time.Time
}

// Waker wakes sleeping devices that registered with this one: a
// content-free POST to the device's push endpoint, or a wake-up over the
// circle's push-capable channels. Safe for concurrent use.
type Waker struct {
	opts WakerOptions

	mu    sync.Mutex
	regs  map[peer.ID]Registration
	last  map[peer.ID]time.Time
	stats WakeStats
}

// WakeStats count wake-ups by outcome.
type WakeStats struct {
	Registered int
	Pushed     int64 // POSTs a push service accepted
	Channel    int64 // wake-ups posted to channels
	Limited    int64 // suppressed by MinInterval
	Failed     int64
	LastError  string
}

// ErrEndpointGone: the push service says the endpoint no longer exists
// (404/410); the registration is dropped.
var ErrEndpointGone = errors.New("mailbox: push endpoint gone")

// NewWaker loads the registrations the backend holds.
func NewWaker(ctx context.Context, opts WakerOptions) (*Waker, error) {
	if opts.MinInterval <= 0 {
		opts.MinInterval = time.Minute
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Backend == nil {
		return nil, errors.New("mailbox: waker: no backend")
	}
	w := &Waker{opts: opts, regs: map[peer.ID]Registration{}, last: map[peer.ID]time.Time{}}
	err := opts.Backend.Load(ctx, func(k, v []byte) error {
		if len(k) < 2 || k[0] != prefixWake {
			return nil
		}
		var r Registration
		if json.Unmarshal(v, &r) == nil && r.Validate() == nil {
			w.regs[peer.ID(k[1:])] = r
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mailbox: load wake-up registrations: %w", err)
	}
	return w, nil
}

func wakeKey(p peer.ID) []byte { return append([]byte{prefixWake}, p...) }

// Register keeps (or replaces) p's registration.
func (w *Waker) Register(p peer.ID, r Registration) error {
	if err := r.Validate(); err != nil {
		return err
	}
	j, _ := json.Marshal(r)
	if err := w.opts.Backend.Put(wakeKey(p), j); err != nil {
		return fmt.Errorf("mailbox: keep wake-up registration: %w", err)
	}
	w.mu.Lock()
	w.regs[p] = r
	w.mu.Unlock()
	return nil
}

// Forget drops p's registration (a removed member).
func (w *Waker) Forget(p peer.ID) error {
	w.mu.Lock()
	delete(w.regs, p)
	w.mu.Unlock()
	return w.opts.Backend.Delete(wakeKey(p))
}

// Registered returns p's registration.
func (w *Waker) Registered(p peer.ID) (Registration, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	r, ok := w.regs[p]
	return r, ok
}

// Wake wakes p if it registered and was not woken within MinInterval:
// through its push endpoint, and through channel (posts a content-free
// wake-up on the push-capable channels) if it asked for that. It reports
// whether a wake-up went out.
func (w *Waker) Wake(ctx context.Context, p peer.ID, channel func(context.Context) error) (bool, error) {
	now := w.opts.Now()
	w.mu.Lock()
	r, ok := w.regs[p]
	if ok && now.Sub(w.last[p]) < w.opts.MinInterval {
		w.stats.Limited++
		ok = false
	} else if ok {
		w.last[p] = now
	}
	w.mu.Unlock()
	if !ok {
		return false, nil
	}
	var errs []error
	if r.Endpoint != "" {
		err := w.post(ctx, r.Endpoint)
		if errors.Is(err, ErrEndpointGone) {
			r.Endpoint = ""
			if r.Channels {
				_ = w.Register(p, r)
			} else {
				_ = w.Forget(p)
			}
		}
		w.count(&w.stats.Pushed, err)
		errs = append(errs, err)
	}
	if r.Channels && channel != nil {
		err := channel(ctx)
		w.count(&w.stats.Channel, err)
		errs = append(errs, err)
	}
	err := errors.Join(errs...)
	return err == nil, err
}

func (w *Waker) count(ok *int64, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.stats.Failed++
		w.stats.LastError = err.Error()
		return
	}
	*ok++
}

// post sends an empty push message (RFC 8030 §5: a push message needs no
// payload): nothing in it names the message, the sender or the circle.
func (w *Waker) post(ctx context.Context, endpoint string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, http.NoBody)
	if err != nil {
		return fmt.Errorf("mailbox: push: %w", err)
	}
	req.Header.Set("TTL", strconv.Itoa(int((24 * time.Hour).Seconds())))
	req.Header.Set("Urgency", "high")
	resp, err := w.opts.Client.Do(req)
	if err != nil {
		return fmt.Errorf("mailbox: push: %w", err)
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return fmt.Errorf("%w (%s)", ErrEndpointGone, resp.Status)
	case resp.StatusCode/100 != 2:
		return fmt.Errorf("mailbox: push: the push service answered %s", resp.Status)
	}
	return nil
}

// Stats reports the wake-ups sent.
func (w *Waker) Stats() WakeStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.stats
	s.Registered = len(w.regs)
	return s
}
