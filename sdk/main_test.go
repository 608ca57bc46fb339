package sdk_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/remora-p2p/remora/sdk"
)

func TestPublishEach(t *testing.T) {
	caps := sdk.Capabilities{MaxPayload: 4, Counting: sdk.CountCodepoints}
	req := sdk.PublishRequest{Items: []sdk.PublishItem{
		{Data: []byte("éééé"), IdempotencyKey: "ok"},   // 4 code points, 8 bytes: fits
		{Data: []byte("abcde"), IdempotencyKey: "big"}, // too large
		{Data: []byte("a"), IdempotencyKey: "../x"},    // bad key
		{Data: []byte("a"), IdempotencyKey: "fail"},    // post fails
	}}
	var posted []string
	resp, err := sdk.PublishEach(context.Background(), req, caps, func(ctx context.Context, it sdk.PublishItem) (string, error) {
		posted = append(posted, it.IdempotencyKey)
		if it.IdempotencyKey == "fail" {
			return "half", sdk.ErrUnavailable
		}
		return "id-" + it.IdempotencyKey, nil
	})
	if err != nil || len(resp.Results) != 4 {
		t.Fatalf("PublishEach: %v, %d results", err, len(resp.Results))
	}
	want := []struct {
		id  string
		err error
	}{{"id-ok", nil}, {"", sdk.ErrTooLarge}, {"", sdk.ErrInvalidArgument}, {"", sdk.ErrUnavailable}}
	for i, w := range want {
		r := resp.Results[i]
		if r.ID != w.id || !errors.Is(r.Err, w.err) || (w.err == nil) != (r.Err == nil) {
			t.Errorf("item %d: got %q, %v; want %q, %v", i, r.ID, r.Err, w.id, w.err)
		}
	}
	if strings.Join(posted, ",") != "ok,fail" {
		t.Errorf("posted %v, want only the valid items", posted)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	resp, _ = sdk.PublishEach(ctx, sdk.PublishRequest{Items: req.Items[:1]}, caps, func(context.Context, sdk.PublishItem) (string, error) {
		t.Error("posted after the context ended")
		return "", nil
	})
	if !errors.Is(resp.Results[0].Err, context.Canceled) {
		t.Errorf("cancelled: got %v", resp.Results[0].Err)
	}
}
