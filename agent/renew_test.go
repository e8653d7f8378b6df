package agent

import (
	"testing"
	"time"
)

func TestRenewDue(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	end := start.Add(30 * 24 * time.Hour)
	for _, tc := range []struct {
		at   time.Duration
		want bool
	}{
		{0, false},
		{19 * 24 * time.Hour, false},
		{20*24*time.Hour - time.Second, false},
		{20 * 24 * time.Hour, true},
		{29 * 24 * time.Hour, true},
		{31 * 24 * time.Hour, true},
	} {
		if got := renewDue(start, end, start.Add(tc.at)); got != tc.want {
			t.Errorf("renewDue(30 days, at %v) = %v, want %v", tc.at, got, tc.want)
		}
	}
	if renewDue(end, start, end) {
		t.Error("renewDue of a certificate with no life = true")
	}
}
