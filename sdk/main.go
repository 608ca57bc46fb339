package sdk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"unicode/utf8"
)

// Main is the whole main function of an adapter executable: it serves a and
// exits, non-zero with the error on stderr if Serve failed.
//
//	func main() { sdk.Main(myAdapter{}) }
func Main(a Adapter, opts ...ServeOption) {
	err := Serve(a, opts...)
	switch {
	case errors.Is(err, ErrNotPlugin): // Serve said what it is
		os.Exit(1)
	case err != nil:
		fmt.Fprintf(os.Stderr, "%s: %v\n", a.Info().Name, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// PublishEach publishes req item by item for adapters whose service takes
// one item per request. It checks each item against the contract first (its
// idempotency key against the key rule: CodeInvalidArgument; its size
// against caps.MaxPayload by caps.Counting: CodeTooLarge), then calls post
// for it, which returns the item's ID on the service or its error. A
// failure touches its item alone; once ctx ends the remaining items fail
// with ctx's error without being posted.
//
// CountMastodon is checked as code points, which never exceeds Mastodon's
// count; such an adapter checks the exact count itself in post.
func PublishEach(ctx context.Context, req PublishRequest, caps Capabilities, post func(ctx context.Context, it PublishItem) (id string, err error)) (PublishResponse, error) {
	resp := PublishResponse{Results: make([]PublishResult, len(req.Items))}
	for i, it := range req.Items {
		r := &resp.Results[i]
		size := len(it.Data)
		if caps.Counting != CountBytes {
			size = utf8.RuneCount(it.Data)
		}
		switch {
		case ctx.Err() != nil:
			r.Err = ctx.Err()
		case !ValidKey(it.IdempotencyKey):
			r.Err = CheckKey("idempotency key", it.IdempotencyKey)
		case size > caps.MaxPayload:
			r.Err = Errorf(CodeTooLarge, "item of %d %s, the channel takes at most %d", size, caps.Counting, caps.MaxPayload)
		default:
			r.ID, r.Err = post(ctx, it)
			if r.Err != nil {
				r.ID = ""
			}
		}
	}
	return resp, nil
}
