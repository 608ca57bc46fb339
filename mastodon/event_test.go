package mastodon

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/remora-p2p/remora/sdk"
)

// FuzzStreamEvent: whatever the streaming socket sends, the adapter never
// panics, delivers only armor text from a known account, and every cursor
// it hands out decodes again.
func FuzzStreamEvent(f *testing.F) {
	status := map[string]any{"id": "9001", "created_at": "2026-01-01T00:00:00Z", "visibility": "direct",
		"account": map[string]any{"id": "1", "username": "alice", "acct": "alice"},
		"content": `<p><span class="h-card"><a href="https://s/@bob" class="u-url mention">@<span>bob</span></a></span> rm1AAAAbbbbCCCCdddd.</p>`}
	n, _ := json.Marshal(map[string]any{"id": "501", "type": "mention", "status": status, "account": status["account"]})
	ev, _ := json.Marshal(map[string]any{"event": "notification", "payload": string(n)})
	f.Add(ev)
	f.Add([]byte(`{"event":"delete","payload":"9001"}`))
	f.Add([]byte(`{"event":"notification","payload":"{\"id\":\"x/y\"}"}`))
	f.Add([]byte(`{"event":"notification","payload":42}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, msg []byte) {
		c := &channel{cfg: Config{}, inst: instanceInfo{domain: "social.example"}, known: map[string]bool{"alice": true}}
		s := &sub{c: c, cur: cursor{V: 1, Account: "7"}, sink: sdk.SinkFunc(func(_ context.Context, d sdk.Delivery) error {
			if len(d.Data) > 0 && (len(d.Data) < minBody || !armorText(string(d.Data)) || d.From != "alice") {
				t.Fatalf("delivered %q from %q", d.Data, d.From)
			}
			if _, err := decodeCursor(d.Cursor, "7"); err != nil {
				t.Fatalf("cursor %s does not decode: %v", d.Cursor, err)
			}
			return nil
		})}
		if err := s.event(context.Background(), msg); err != nil {
			t.Fatalf("event: %v", err)
		}
	})
}
