package main

import (
	"fmt"
	"slices"
	"sync"
	"time"
)

// latencies collects call durations from many goroutines. Each worker
// keeps its own slice (no lock on the hot path) and merges it at the end.
type latencies struct {
	mu  sync.Mutex
	all []time.Duration
}

func (l *latencies) merge(d []time.Duration) {
	l.mu.Lock()
	l.all = append(l.all, d...)
	l.mu.Unlock()
}

// quantile returns the q-quantile (0..1) of the durations, sorting them
// first when asked.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)-1))
	return sorted[i]
}

// summary is what the table prints of a set of durations.
type summary struct {
	n             int
	p50, p99, max time.Duration
}

func summarize(d []time.Duration) summary {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s) == 0 {
		return summary{}
	}
	return summary{n: len(s), p50: quantile(s, 0.5), p99: quantile(s, 0.99), max: s[len(s)-1]}
}

// ms formats a duration in milliseconds with sensible precision.
func ms(d time.Duration) string {
	f := float64(d) / float64(time.Millisecond)
	switch {
	case f >= 100:
		return fmt.Sprintf("%.0f ms", f)
	case f >= 10:
		return fmt.Sprintf("%.1f ms", f)
	default:
		return fmt.Sprintf("%.2f ms", f)
	}
}

// mib formats bytes in MiB.
func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// row is one line of the result table.
type row struct {
	Scenario string `json:"scenario"`
	Size     string `json:"size"`
	Measured string `json:"measured"`
	Target   string `json:"target"`
	Verdict  string `json:"verdict"`
	Detail   string `json:"detail"`
}

// verdict compares a measured figure with a target: at least (higher is
// better) or at most.
func verdict(measured, target float64, atLeast bool) string {
	met := measured >= target
	if !atLeast {
		met = measured <= target
	}
	ratio := measured / target
	if met {
		return fmt.Sprintf("met (%.2f×)", ratio)
	}
	return fmt.Sprintf("missed (%.2f×)", ratio)
}
