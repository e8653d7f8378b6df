package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// benchParallelism is how many goroutines per GOMAXPROCS the write
// benchmarks run: a server answers many agents at once, and the batches
// are only as large as the number of writers waiting.
const benchParallelism = 64

// benchStore opens a fresh store of the benchmark's kind (eachStoreB).
func benchStore(b *testing.B, opts Options) *Store {
	b.Helper()
	return openAt(b, testLoc(b), opts)
}

// eachStoreB runs a benchmark once per database, as sub-benchmarks named
// for it: BenchmarkCheckin/sqlite, BenchmarkCheckin/postgres.
func eachStoreB(b *testing.B, fn func(b *testing.B)) {
	for _, k := range kinds {
		b.Run(k, fn)
	}
}

// reportMetrics adds ops/s and the mean batch size.
func reportMetrics(b *testing.B, s *Store, unit string) {
	b.Helper()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit+"/s")
	if st := s.Stats(); st.Batches > 0 {
		b.ReportMetric(float64(st.Requests)/float64(st.Batches), "reqs/batch")
	}
}

// noChangeReport is a run of a node where everything was in sync: the
// summary alone is stored.
func noChangeReport(run int64) Report {
	return Report{
		RunID: fmt.Sprintf("%024x", run), Version: strings.Repeat("a", 40), CatalogDigest: "sha256:" + strings.Repeat("b", 64),
		Started: time.Unix(0, run), Duration: 800 * time.Millisecond,
		Summary: Summary{Resources: 50, InSync: 50}, Events: inSyncEvents,
	}
}

// inSyncEvents are the 50 events of a no-change run, made once: the
// benchmarks measure the store, not building reports.
var inSyncEvents = func() []Event {
	events := make([]Event, 50)
	for i := range events {
		events[i] = Event{ID: fmt.Sprintf("file:/etc/app/%d.conf", i), Type: "file", Status: StatusInSync, Duration: time.Millisecond}
	}
	return events
}()

// changedEvents are the events of a run where 100 resources changed.
var changedEvents = func() []Event {
	events := make([]Event, 100)
	for i := range events {
		events[i] = Event{ID: fmt.Sprintf("file:/etc/app/%d.conf", i), Type: "file", Status: "changed", Duration: 2 * time.Millisecond,
			ChangesJSON: []byte(`[{"attr":"content","from":"sha256:1111","to":"sha256:2222","diff":"--- a\n+++ b\n@@ -1 +1 @@\n-workers = 2\n+workers = 4\n","action":"update"}]`)}
	}
	return events
}()

// changedReport is a run where 100 resources changed, each event with a
// small diff.
func changedReport(run int64) Report {
	r := noChangeReport(run)
	r.Summary = Summary{Resources: 100, Changed: 100}
	r.Events = changedEvents
	return r
}

func benchReports(b *testing.B, opts Options, mk func(run int64) Report) {
	s := benchStore(b, opts)
	ctx := context.Background()
	var seq atomic.Int64
	b.SetParallelism(benchParallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := seq.Add(1)
			if _, err := s.SaveReport(ctx, fmt.Sprintf("node-%04d", n%2000), mk(n)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	reportMetrics(b, s, "reports")
}

// BenchmarkSaveReportNoChange: durable no-change reports from many
// concurrent agents.
func BenchmarkSaveReportNoChange(b *testing.B) {
	eachStoreB(b, func(b *testing.B) {
		benchReports(b, Options{}, noChangeReport)
	})
}

// BenchmarkSaveReportNoChangeUnbatched is the same with one report per
// transaction: what group commit is measured against.
func BenchmarkSaveReportNoChangeUnbatched(b *testing.B) {
	eachStoreB(b, func(b *testing.B) {
		benchReports(b, Options{BatchMax: 1}, noChangeReport)
	})
}

// BenchmarkSaveReport100Events: durable reports with 100 changed events.
func BenchmarkSaveReport100Events(b *testing.B) {
	eachStoreB(b, func(b *testing.B) {
		benchReports(b, Options{}, changedReport)
	})
}

// BenchmarkCheckin: check-ins from many agents, including the flush that
// makes the last of them durable.
func BenchmarkCheckin(b *testing.B) {
	eachStoreB(b, func(b *testing.B) {
		s := benchStore(b, Options{})
		ctx := context.Background()
		var seq atomic.Int64
		now := time.Now()
		b.SetParallelism(benchParallelism)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				n := seq.Add(1)
				if err := s.Checkin(ctx, fmt.Sprintf("node-%05d", n%10000), now.Add(time.Duration(n)), "1.0.0", now.Add(30*time.Minute)); err != nil {
					b.Error(err)
					return
				}
			}
		})
		if err := s.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "checkins/s")
		// Coalescing: how many row writes a check-in cost (10,000 nodes).
		b.ReportMetric(float64(s.Stats().Checkins)/float64(b.N), "writes/checkin")
	})
}

// BenchmarkSaveFacts: every call is new facts (a new blob and a history
// row), about 6 KB of JSON each: the worst case, as when a volatile fact
// is in the digest.
func BenchmarkSaveFacts(b *testing.B) {
	eachStoreB(b, func(b *testing.B) {
		s := benchStore(b, Options{})
		ctx := context.Background()
		var seq atomic.Int64
		base := strings.Repeat(`"k":"some fact value with a little text",`, 150)
		b.SetParallelism(benchParallelism)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				n := seq.Add(1)
				js := []byte(fmt.Sprintf(`{%s"uptime":%d}`, base, n))
				sum := sha256.Sum256(js)
				if err := s.SaveFacts(ctx, fmt.Sprintf("node-%04d", n%2000), "sha256:"+hex.EncodeToString(sum[:]), js, time.Unix(0, n)); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.StopTimer()
		reportMetrics(b, s, "facts")
	})
}
