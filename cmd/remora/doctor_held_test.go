package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/remora-p2p/remora/core/api"
)

func TestDoctorHeld(t *testing.T) {
	tests := []struct {
		name string
		h    api.Held
		ok   bool
		want []string
		not  []string
	}{
		{"empty", api.Held{QuotaBytes: 32 << 20, PerSenderBytes: 8 << 20}, true,
			[]string{"ok   held envelopes", "0 envelope(s)", "32.0 MiB", "8.0 MiB per sender"}, []string{"refused", "what to do"}},
		{"refusals", api.Held{Items: 3, Bytes: 4 << 20, QuotaBytes: 32 << 20, PerSenderBytes: 8 << 20, DroppedQuota: 7, DroppedJoinParts: 2, DuplicatesRemoved: 19}, true,
			[]string{"ok   held envelopes", "7 over a held quota, 2 join parts over their bounds, 19 duplicates", "the daemon's log names it"}, nil},
		{"nearly full", api.Held{Items: 900, Bytes: 31 << 20, QuotaBytes: 32 << 20, PerSenderBytes: 8 << 20}, false,
			[]string{"FAIL held envelopes", "what to do"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			h := tt.h
			if ok := doctorHeld(&b, &h); ok != tt.ok {
				t.Errorf("ok = %v, want %v", ok, tt.ok)
			}
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, b.String())
				}
			}
			for _, w := range tt.not {
				if strings.Contains(b.String(), w) {
					t.Errorf("output has %q:\n%s", w, b.String())
				}
			}
		})
	}
}
