package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/herdcm/herd/server/ca"
)

// TestFailedRequestDoesNotFailBatch puts a duplicate PutCert in one batch
// with good writes: it alone fails, and the others commit.
func TestFailedRequestDoesNotFailBatch(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		path := testLoc(t)
		first, err := Open(path, Options{Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		must(t, first.PutCert(ctx, ca.Cert{Name: "web-01", Serial: "01", DER: []byte{1}}))
		must(t, first.Close())
		// A long window and a batch of exactly three: the writer waits for
		// the three writes below and commits them together.
		s := openAt(t, path, Options{BatchMax: 3, BatchDelay: time.Minute})
		before := s.Stats()

		var wg sync.WaitGroup
		var errCert, errDup, errPending error
		wg.Go(func() { errCert = s.PutCert(ctx, ca.Cert{Name: "web-02", Serial: "02", DER: []byte{2}}) })
		wg.Go(func() { errDup = s.PutCert(ctx, ca.Cert{Name: "web-01", Serial: "03", DER: []byte{3}}) })
		wg.Go(func() { errPending = s.PutPending(ctx, ca.Pending{Name: "db-01", CSR: []byte{4}, Requested: at(1)}) })
		wg.Wait()

		if errCert != nil || errPending != nil {
			t.Errorf("good writes in the batch failed: %v, %v", errCert, errPending)
		}
		if !errors.Is(errDup, ca.ErrExists) {
			t.Errorf("PutCert of a name with a valid certificate = %v, want ca.ErrExists", errDup)
		}
		after := s.Stats()
		if got := after.Batches - before.Batches; got != 1 {
			t.Errorf("the three writes took %d transactions, want 1", got)
		}
		if got := after.Failed - before.Failed; got != 1 {
			t.Errorf("Stats().Failed grew by %d, want 1", got)
		}

		// A new store on the same file sees what was acknowledged.
		other := openAt(t, path, Options{})
		if c, ok, err := other.Cert(ctx, "web-02"); err != nil || !ok || c.Serial != "02" {
			t.Errorf("Cert(web-02) from a new store = %+v, %v, %v", c, ok, err)
		}
		if c, ok, err := other.Cert(ctx, "web-01"); err != nil || !ok || c.Serial != "01" {
			t.Errorf("Cert(web-01) from a new store = %+v, %v, %v; want serial 01", c, ok, err)
		}
		if _, ok, err := other.Pending(ctx, "db-01"); err != nil || !ok {
			t.Errorf("Pending(db-01) from a new store = %v, %v", ok, err)
		}
	})
}

// TestAckedIsCommitted: once SaveReport returns, another store opened on
// the file (another process, as far as sqlite knows) reads the report.
func TestAckedIsCommitted(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		path := testLoc(t)
		s := openAt(t, path, Options{})
		other := openAt(t, path, Options{})
		for i := range 20 {
			run := fmt.Sprintf("run-%d", i)
			if _, err := s.SaveReport(ctx, "web-01", Report{RunID: run, Started: at(i)}); err != nil {
				t.Fatal(err)
			}
			rs, err := other.Reports(ctx, "web-01", 1)
			if err != nil || len(rs) != 1 || rs[0].RunID != run {
				t.Fatalf("after SaveReport(%s) returned, a new store reads %+v, %v", run, rs, err)
			}
		}
	})
}

// TestBatching: concurrent writes share transactions.
func TestBatching(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := openAt(t, testLoc(t), Options{BatchDelay: 20 * time.Millisecond})
		const n = 200
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				if _, err := s.SaveReport(ctx, fmt.Sprintf("web-%02d", i%10), Report{RunID: fmt.Sprint(i)}); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		st := s.Stats()
		if st.Requests != n || st.Failed != 0 {
			t.Errorf("Stats() = %+v, want %d requests, none failed", st, n)
		}
		// Not a timing assertion: with a 20ms window, 200 writes queued at
		// once cannot need 200 transactions.
		if st.Batches >= n {
			t.Errorf("%d writes took %d transactions: no batching", n, st.Batches)
		}
		t.Logf("%d writes in %d transactions", n, st.Batches)
	})
}

// TestWriteAfterCancelMayCommit documents the contract: the caller whose
// context ends gets ctx.Err(), and its queued write may still commit.
func TestWriteAfterCancelMayCommit(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		s := openAt(t, testLoc(t), Options{BatchDelay: 200 * time.Millisecond, BatchMax: 1000})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		_, err := s.SaveReport(ctx, "web-01", Report{RunID: "r1"})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("SaveReport past its deadline = %v, want context.DeadlineExceeded", err)
		}
		// The retry the agent makes is answered as a duplicate: the first
		// write did commit.
		dup, err := s.SaveReport(context.Background(), "web-01", Report{RunID: "r1"})
		if err != nil || !dup {
			t.Errorf("retry = %v, %v; want duplicate", dup, err)
		}
	})
}

// TestReadsWhileWriting: readers run beside a busy writer and never see
// an error (no SQLITE_BUSY), and each sees a committed state.
func TestReadsWhileWriting(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := openTest(t)
		stop := make(chan struct{})
		var readers sync.WaitGroup
		for range 4 {
			readers.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					rs, err := s.Reports(ctx, "", 20)
					if err != nil {
						t.Errorf("Reports while writing: %v", err)
						return
					}
					for _, r := range rs {
						if len(r.Events) != r.Summary.Changed {
							t.Errorf("report %s read with %d of its %d events", r.RunID, len(r.Events), r.Summary.Changed)
							return
						}
					}
					if _, err := s.Nodes(ctx); err != nil {
						t.Errorf("Nodes while writing: %v", err)
						return
					}
				}
			})
		}
		var writers sync.WaitGroup
		for w := range 8 {
			writers.Go(func() {
				for i := range 50 {
					r := Report{RunID: fmt.Sprintf("%d-%d", w, i), Summary: Summary{Changed: 3},
						Events: []Event{{ID: "a", Status: "changed"}, {ID: "b", Status: "changed"}, {ID: "c", Status: "changed"}}}
					if _, err := s.SaveReport(ctx, fmt.Sprintf("web-%d", w), r); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		writers.Wait()
		close(stop)
		readers.Wait()
	})
}

// TestPanickingRequest: a bug in one request fails it alone.
func TestPanickingRequest(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := openTest(t)
		err := s.write(ctx, func(w *wtx) error {
			if _, err := w.exec(`INSERT INTO pending (name, csr, requested) VALUES ('half', x'00', 0)`); err != nil {
				return err
			}
			panic("boom")
		})
		if err == nil {
			t.Fatal("a panicking request succeeded")
		}
		if _, ok, _ := s.Pending(ctx, "half"); ok {
			t.Error("a panicking request's writes were kept")
		}
		must(t, s.PutPending(ctx, ca.Pending{Name: "after", CSR: []byte{1}}))
	})
}
