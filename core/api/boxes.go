package api

import (
	"context"
	"net/http"
	"time"
)

// Box is one bootstrap box (a way of finding members) as `remora doctor`
// shows it: mdns, cache, pex, channel:NAME, web, dns, relaylist, cheapest
// first.
type Box struct {
	Name       string `json:"name"`
	Configured bool   `json:"configured"`
	// State is ok (worked), failing (its last attempt failed), idle
	// (configured, not tried or nothing to report yet) or off.
	State       string    `json:"state"`
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	// Found is how many distinct members the box reported.
	Found     int       `json:"found"`
	LastFound time.Time `json:"last_found,omitzero"`
	Error     string    `json:"error,omitempty"`
	// Fix says what to do about Error, or how to turn the box on.
	Fix string `json:"fix,omitempty"`
	// Detail says what the box is doing (mdns: on which networks it
	// announces and why not on the others).
	Detail string `json:"detail,omitempty"`
}

// RelayDial is what a node saw of one volunteer relay of the relay list.
type RelayDial struct {
	Peer        string    `json:"peer"`
	Successes   uint64    `json:"successes"`
	Failures    uint64    `json:"failures"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastFailure time.Time `json:"last_failure,omitzero"`
}

func (s *server) relayDials(w http.ResponseWriter, r *http.Request) {
	d, err := s.b.RelayDials(r.Context())
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, orEmpty(d))
}

// RelayDials returns the reservation outcomes on volunteer relays.
func (c *Client) RelayDials(ctx context.Context) ([]RelayDial, error) {
	var out []RelayDial
	return out, c.do(ctx, http.MethodGet, "/v1/relays/dials", nil, &out)
}

func (s *server) boxes(w http.ResponseWriter, r *http.Request) {
	b, err := s.b.Boxes(r.Context())
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, orEmpty(b))
}

// Boxes returns the bootstrap boxes' report.
func (c *Client) Boxes(ctx context.Context) ([]Box, error) {
	var out []Box
	return out, c.do(ctx, http.MethodGet, "/v1/boxes", nil, &out)
}
