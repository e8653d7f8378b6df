package facts

import (
	"context"
	"errors"
	"strconv"
	"strings"
)

// collectMemory reads /proc/meminfo.
func collectMemory(_ context.Context, h *host) (Facts, error) {
	b, err := h.readFile("/proc/meminfo")
	if err != nil {
		return nil, err
	}
	mi := parseMeminfo(b)
	total, ok := mi["MemTotal"]
	if !ok {
		return nil, errors.New("reading /proc/meminfo: no MemTotal")
	}
	avail, ok := mi["MemAvailable"]
	if !ok {
		// Kernels before 3.14 lack MemAvailable; this is the estimate
		// free(1) made before it.
		avail = mi["MemFree"] + mi["Buffers"] + mi["Cached"]
	}
	return Facts{"memory": map[string]any{
		"total_bytes":      total,
		"available_bytes":  avail,
		"swap_total_bytes": mi["SwapTotal"],
		"swap_free_bytes":  mi["SwapFree"],
	}}, nil
}

// parseMeminfo parses "Key:   123 kB" lines into bytes (or plain counts,
// for the few lines without a unit). Lines it cannot read are skipped.
func parseMeminfo(b []byte) map[string]int64 {
	m := map[string]int64{}
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		n, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil || n < 0 {
			continue
		}
		if len(fields) > 1 && fields[1] == "kB" {
			// The kernel's "kB" is KiB. Saturate rather than wrap on a
			// corrupt line.
			if n > (1<<63-1)/1024 {
				continue
			}
			n *= 1024
		}
		m[strings.TrimSpace(k)] = n
	}
	return m
}
