package catalogs

import (
	"fmt"
	"strconv"
	"strings"
)

// cronShortcuts are the @-schedules Debian's cron (vixie cron) accepts in
// place of the five fields.
var cronShortcuts = []string{"@reboot", "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}

// cronFields are the five time fields of a crontab line: their names (for
// messages), their ranges and the names cron accepts for their values.
var cronFields = [5]struct {
	name     string
	min, max int
	names    []string // names[i] stands for min+i
}{
	{name: "minute", min: 0, max: 59},
	{name: "hour", min: 0, max: 23},
	{name: "day of month", min: 1, max: 31},
	{name: "month", min: 1, max: 12, names: []string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}},
	// 0 and 7 are both Sunday.
	{name: "day of week", min: 0, max: 7, names: []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}},
}

// CheckCronSchedule checks a cron schedule as Debian's cron reads it: five
// fields (minute, hour, day of month, month, day of week), each "*" or a
// comma-separated list of values and ranges ("1-5"), any of them with a
// step ("*/15", "0-30/5"); months and days of the week also by their
// three-letter names; or one of @reboot, @yearly, @annually, @monthly,
// @weekly, @daily, @midnight, @hourly. The error names the field at fault.
func CheckCronSchedule(s string) error {
	if strings.HasPrefix(s, "@") {
		for _, sc := range cronShortcuts {
			if s == sc {
				return nil
			}
		}
		return fmt.Errorf("%q is not one of %s", s, strings.Join(cronShortcuts, ", "))
	}
	fields := strings.Fields(s)
	if len(fields) != 5 || strings.ContainsAny(s, "\n\r") {
		return fmt.Errorf("%q: want five fields (minute hour day-of-month month day-of-week, like \"*/15 * * * *\") or one of %s", s, strings.Join(cronShortcuts, ", "))
	}
	for i, f := range fields {
		if err := checkCronField(f, i); err != nil {
			return fmt.Errorf("%s field %q: %w", cronFields[i].name, f, err)
		}
	}
	return nil
}

// checkCronField checks one of the five fields.
func checkCronField(f string, i int) error {
	spec := cronFields[i]
	for _, item := range strings.Split(f, ",") {
		rng, step, hasStep := strings.Cut(item, "/")
		if hasStep {
			n, err := strconv.Atoi(step)
			if err != nil || n < 1 || n > spec.max {
				return fmt.Errorf("step %q: want a number from 1 to %d", step, spec.max)
			}
		}
		if rng == "*" {
			continue
		}
		lo, hi, isRange := strings.Cut(rng, "-")
		a, err := cronValue(lo, spec.min, spec.max, spec.names)
		if err != nil {
			return err
		}
		if !isRange {
			if hasStep {
				return fmt.Errorf("%q: a step needs * or a range before it", item)
			}
			continue
		}
		b, err := cronValue(hi, spec.min, spec.max, spec.names)
		if err != nil {
			return err
		}
		if b < a {
			return fmt.Errorf("range %q runs backwards", rng)
		}
	}
	return nil
}

// cronValue reads one value of a field: a number in [min, max] or a name.
func cronValue(v string, min, max int, names []string) (int, error) {
	for i, n := range names {
		if strings.EqualFold(v, n) {
			return min + i, nil
		}
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min || n > max || v == "" || v[0] == '+' || v[0] == '-' {
		if len(names) > 0 {
			return 0, fmt.Errorf("%q: want a number from %d to %d or a name like %q", v, min, max, names[0])
		}
		return 0, fmt.Errorf("%q: want a number from %d to %d", v, min, max)
	}
	return n, nil
}
