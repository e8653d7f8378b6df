package catalogs

import (
	"strings"
	"testing"
)

func TestCheckCronSchedule(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, wantErr string // wantErr: a part of the message; "" for valid
	}{
		{"* * * * *", ""},
		{"*/15 * * * *", ""},
		{"0 3 * * 1-5", ""},
		{"0,30 8-18/2 1,15 jan-jun sun", ""},
		{"0 0 * * 7", ""},
		{"0 0 1 DEC Sat", ""},
		{"@hourly", ""},
		{"@reboot", ""},
		{"", "want five fields"},
		{"* * * *", "want five fields"},
		{"* * * * * *", "want five fields"},
		{"60 * * * *", "minute field"},
		{"* 24 * * *", "hour field"},
		{"* * 0 * *", "day of month field"},
		{"* * * 13 *", "month field"},
		{"* * * * 8", "day of week field"},
		{"*/0 * * * *", "step"},
		{"5/2 * * * *", "a step needs"},
		{"10-5 * * * *", "runs backwards"},
		{"-1 * * * *", "minute field"},
		{"+1 * * * *", "minute field"},
		{"1,,2 * * * *", "minute field"},
		{"@fortnightly", "is not one of"},
		{"* * * * mon-xyz", "day of week field"},
	} {
		err := CheckCronSchedule(tc.in)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("CheckCronSchedule(%q) = %v, want nil", tc.in, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("CheckCronSchedule(%q) = %v, want an error containing %q", tc.in, err, tc.wantErr)
		}
	}
}

// FuzzCheckCronSchedule feeds the schedule parser anything: it must not
// panic, and what it accepts must be a shortcut or five fields made only
// of the characters cron reads, so that a crontab line never gains a
// field or a line from a schedule.
func FuzzCheckCronSchedule(f *testing.F) {
	for _, s := range []string{"* * * * *", "*/15 0-23/2 1,15 jan-dec mon-fri", "@daily", "0 0 * * 7", "60 * * * *", "1-/2 * * * *", "\n* * * *"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if CheckCronSchedule(s) != nil {
			return
		}
		if strings.HasPrefix(s, "@") {
			return
		}
		if strings.ContainsAny(s, "\n\r#%") || len(strings.Fields(s)) != 5 {
			t.Fatalf("CheckCronSchedule accepted %q", s)
		}
	})
}
