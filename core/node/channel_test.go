package node

import (
	"bytes"
	"testing"

	"github.com/remora-p2p/remora/core/envelope"
	"github.com/remora-p2p/remora/sdk"
)

// capsOnly is a channel that only declares capabilities.
type capsOnly struct {
	sdk.Channel
	caps sdk.Capabilities
}

func (c capsOnly) Capabilities() sdk.Capabilities { return c.caps }

func (c capsOnly) Close() error { return nil }

// TestChannelItemsHaveNothingConstant: what a channel carries has no value
// that is the same in every post, on text and binary channels: envelopes of
// one suite start with the same two bytes, and none of the channel's posts
// share them or a prefix; every member (same channel ID) reads them back,
// another channel does not.
func TestChannelItemsHaveNothingConstant(t *testing.T) {
	for _, text := range []bool{true, false} {
		caps := sdk.Capabilities{MaxPayload: 4096, Text: text, Counting: sdk.CountBytes, Delete: sdk.DeleteNone, Idempotency: sdk.Idempotency{Level: sdk.IdempotencyNone}}
		ch, err := newChannel(Channel{Name: "room", ID: "friends-room", Impl: capsOnly{caps: caps}})
		if err != nil {
			t.Fatal(err)
		}
		other, err := newChannel(Channel{Name: "list", ID: "friends-list", Impl: capsOnly{caps: caps}})
		if err != nil {
			t.Fatal(err)
		}
		starts := map[string]bool{}
		const posts = 32
		for i := range posts {
			env := make([]byte, 256)
			env[0], env[1] = envelope.Version, byte(envelope.SuiteBroadcast)
			env[2], env[3] = byte(i), byte(i>>8) // the rest of the header is fresh per envelope
			item := ch.encode(env)
			starts[string(item[:2])] = true
			if got := ch.decode(item); len(got) != 1 || !bytes.Equal(got[0], env) {
				t.Fatalf("text %v: post %d does not decode back", text, i)
			}
			if got := other.decode(item); len(got) == 1 && bytes.Equal(got[0], env) {
				t.Fatalf("text %v: another channel reads post %d", text, i)
			}
		}
		if len(starts) < posts-3 {
			t.Fatalf("text %v: %d distinct starts in %d posts: something is constant", text, len(starts), posts)
		}
	}
}
