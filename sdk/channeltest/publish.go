package channeltest

import (
	"context"
	"testing"
	"time"

	"github.com/remora-p2p/remora/sdk"
)

// Publish publishes items on ch within two minutes and fails the test if
// the call or any item fails: for adapters' own tests, where a publish is
// set-up rather than the thing under test.
func Publish(t testing.TB, ch sdk.Channel, items ...sdk.PublishItem) []sdk.PublishResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp, err := ch.Publish(ctx, sdk.PublishRequest{Items: items})
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	for i, r := range resp.Results {
		if r.Err != nil {
			t.Fatalf("publish item %d: %v", i, r.Err)
		}
	}
	return resp.Results
}
