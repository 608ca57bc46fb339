package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/remora-p2p/remora/core/api"
)

func TestDoctorRoster(t *testing.T) {
	now := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	week := now.Add(-7 * 24 * time.Hour)
	tests := []struct {
		name string
		r    api.RosterHealth
		ok   bool
		want []string
	}{
		{"healthy", api.RosterHealth{Ops: 12, Member: true, PrekeyCreated: week, PrekeyCurrent: true, KeyCreated: week},
			true, []string{"ok   roster friends", "12 operations", "is published"}},
		{"just rotated", api.RosterHealth{Ops: 12, Member: true, PrekeyCreated: week, KeyCreated: now.Add(-time.Minute)},
			true, []string{"ok   roster friends"}},
		{"prekey not published", api.RosterHealth{Ops: 12, Member: true, PrekeyCreated: week.Add(-21 * 24 * time.Hour), KeyCreated: week},
			false, []string{"FAIL roster friends", "not the current one", "publish prekey"}},
		{"ops waiting a minute", api.RosterHealth{Ops: 12, Member: true, PrekeyCurrent: true, KeyCreated: week, Waiting: 2, OldestWaiting: now.Add(-time.Minute)},
			true, []string{"2 waiting for their parents since 1m0s ago"}},
		{"ops waiting for a day", api.RosterHealth{Ops: 12, Member: true, PrekeyCurrent: true, KeyCreated: week, Waiting: 2, OldestWaiting: now.Add(-24 * time.Hour)},
			false, []string{"FAIL", "may be offline"}},
		{"removed", api.RosterHealth{Ops: 12},
			false, []string{"no longer a member", "invite it again"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			r := tt.r
			ok := doctorRoster(&b, []api.Circle{{ID: "c1", Name: "friends", Roster: &r}}, now)
			if ok != tt.ok {
				t.Errorf("ok = %v, want %v", ok, tt.ok)
			}
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, b.String())
				}
			}
		})
	}
}
