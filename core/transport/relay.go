package transport

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	ma "github.com/multiformats/go-multiaddr"
)

// relayEntry is one relay we hold (or try to hold) a reservation on.
type relayEntry struct {
	info   peer.AddrInfo
	cancel context.CancelFunc
	kick   chan struct{} // reserve again now (the relay connection dropped)
}

// AddRelay makes r one of our relays (a friend's relay offer from presence):
// the gater admits it and a reservation is held on it, so that members can
// reach us through it; our Addrs then include the relay addresses. Adding a
// known relay updates its addresses and, if they changed or no reservation
// is held, retries its reservation now.
func (t *Transport) AddRelay(r peer.AddrInfo) error {
	if t.closed.Load() {
		return fmt.Errorf("transport: add relay: %w", ErrClosed)
	}
	if r.ID == "" || r.ID == t.self {
		return errors.New("transport: add relay: need another peer's ID")
	}
	if len(r.Addrs) == 0 {
		return fmt.Errorf("transport: add relay %s: %w", shortID(r.ID), ErrNoAddrs)
	}
	t.relayMu.Lock()
	defer t.relayMu.Unlock()
	if e, ok := t.relays[r.ID]; ok {
		same := slices.EqualFunc(e.info.Addrs, r.Addrs, ma.Multiaddr.Equal)
		e.info.Addrs = slices.Clone(r.Addrs)
		t.mu.Lock()
		_, held := t.rsvp[r.ID]
		t.mu.Unlock()
		if same && held {
			return nil // every presence record repeats the offer: nothing to redo
		}
		select {
		case e.kick <- struct{}{}:
		default:
		}
		return nil
	}
	e := &relayEntry{info: r, kick: make(chan struct{}, 1)}
	t.relays[r.ID] = e
	t.startReserve(e)
	return nil
}

// RemoveRelay stops using relay id: its reservation lapses and the gater no
// longer admits it unless Allow does.
func (t *Transport) RemoveRelay(id peer.ID) {
	t.relayMu.Lock()
	e, ok := t.relays[id]
	delete(t.relays, id)
	t.relayMu.Unlock()
	if ok && e.cancel != nil {
		e.cancel()
	}
	t.setReservation(id, nil)
}

// Relays lists our relays.
func (t *Transport) Relays() []peer.ID {
	t.relayMu.RLock()
	defer t.relayMu.RUnlock()
	return slices.Sorted(maps.Keys(t.relays))
}

// Served lists the members holding a reservation on our relay service now
// (reserved or refreshed within its reservation life).
func (t *Transport) Served() []peer.ID {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	maps.DeleteFunc(t.served, func(_ peer.ID, at time.Time) bool { return now.Sub(at) > t.relayTTL })
	return slices.Sorted(maps.Keys(t.served))
}

// Reserved lists the relays we hold a reservation on now.
func (t *Transport) Reserved() []peer.ID {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Sorted(maps.Keys(t.rsvp))
}

// startReserve starts e's reservation loop; t.relayMu is held.
func (t *Transport) startReserve(e *relayEntry) {
	ctx, cancel := context.WithCancel(t.ctx)
	e.cancel = cancel
	t.wg.Add(1)
	go t.reserveLoop(ctx, e)
}

// kickRelay asks p's reservation loop, if p is a relay, to reserve again now.
func (t *Transport) kickRelay(p peer.ID) {
	t.relayMu.RLock()
	defer t.relayMu.RUnlock()
	if e, ok := t.relays[p]; ok {
		select {
		case e.kick <- struct{}{}:
		default:
		}
	}
}

// reserveLoop holds a reservation on one relay, refreshing it at three
// quarters of its life, again at once when the connection to the relay
// drops, and with exponential backoff after failures; the relay addresses it
// yields are ours (kind relay) while it lasts.
func (t *Transport) reserveLoop(ctx context.Context, e *relayEntry) {
	defer t.wg.Done()
	defer t.setReservation(e.info.ID, nil)
	backoff := time.Second
	for {
		t.relayMu.RLock()
		info := peer.AddrInfo{ID: e.info.ID, Addrs: slices.Clone(e.info.Addrs)}
		t.relayMu.RUnlock()
		rctx, cancel := context.WithTimeout(ctx, relayDialTimeout)
		rsvp, err := client.Reserve(rctx, t.h, info)
		cancel()
		if ctx.Err() != nil {
			return // removed or closed meanwhile
		}
		wait := backoff
		if err != nil {
			t.setReservation(info.ID, nil)
			t.emit(Event{Kind: EventReservation, Peer: info.ID, Err: err.Error()})
			t.log.Debug("relay reservation failed", "relay", info.ID, "err", err, "retry", backoff)
			backoff = min(backoff*2, 5*time.Minute)
		} else {
			backoff = time.Second
			t.setReservation(info.ID, circuitAddrs(info, rsvp.Addrs))
			t.emit(Event{Kind: EventReservation, Peer: info.ID})
			wait = max(time.Until(rsvp.Expiration)*3/4, 10*time.Second)
			t.log.Info("relay reservation", "relay", info.ID, "expires", rsvp.Expiration)
		}
		select {
		case <-ctx.Done():
			return
		case <-e.kick:
			// a short pause so that a flapping relay cannot spin us
			select {
			case <-ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
		case <-time.After(wait):
		}
	}
}

func (t *Transport) setReservation(relay peer.ID, addrs []ma.Multiaddr) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if addrs == nil {
		delete(t.rsvp, relay)
	} else {
		t.rsvp[relay] = addrs
	}
}
