package facts

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// collectUptime reads /proc/uptime, and the boot time from /proc/stat's
// btime line (exact, where now minus uptime drifts by a second between runs).
func collectUptime(_ context.Context, h *host) (Facts, error) {
	b, err := h.readLine("/proc/uptime")
	if err != nil {
		return nil, err
	}
	secs, err := parseUptime(b)
	if err != nil {
		return nil, fmt.Errorf("reading /proc/uptime: %w", err)
	}
	boot := h.now.Add(-time.Duration(secs) * time.Second)
	if stat, err := h.readFile("/proc/stat"); err == nil {
		if bt, ok := parseBtime(stat); ok {
			boot = time.Unix(bt, 0)
		}
	}
	return Facts{"uptime": map[string]any{
		"seconds":   secs,
		"boot_time": boot.UTC().Format(time.RFC3339),
	}}, nil
}

// parseUptime returns the whole seconds of /proc/uptime's first number.
func parseUptime(s string) (int64, error) {
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return 0, errors.New("empty")
	}
	f, err := strconv.ParseFloat(fields[0], 64)
	if err != nil || !(f >= 0 && f <= 1<<62) { // NaN fails both
		return 0, fmt.Errorf("not a number of seconds: %q", fields[0])
	}
	return int64(f), nil
}

func parseBtime(stat []byte) (int64, bool) {
	for line := range strings.SplitSeq(string(stat), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n, err == nil && n > 0
		}
	}
	return 0, false
}
