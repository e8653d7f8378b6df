package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestServerTrouble: each failure the agent retries is a sentence naming
// the server and the cause, never grpc's "rpc error: code = …".
func TestServerTrouble(t *testing.T) {
	t.Parallel()
	refused := status.Error(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial tcp 10.0.0.5:8140: connect: connection refused"`)
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"refused", rpcError("checking in", refused, nil), "checking in: cannot reach the server at 10.0.0.5:8140 (connection refused)"},
		{"wrapped", fmt.Errorf("renewing: %w", refused), "cannot reach the server at 10.0.0.5:8140 (connection refused)"},
		{"tls", rpcError("enrolling", status.Error(codes.Unavailable, `connection error: desc = "transport: authentication handshake failed: x509: certificate signed by unknown authority"`), nil),
			"enrolling: cannot reach the server at 10.0.0.5:8140 (TLS handshake failed: x509: certificate signed by unknown authority)"},
		{"slow", rpcError("checking in", status.Error(codes.DeadlineExceeded, "context deadline exceeded"), nil),
			"checking in: the server at 10.0.0.5:8140 did not answer in time (context deadline exceeded)"},
		{"busy", &RPCError{Op: "sending report r1", Err: status.Error(codes.ResourceExhausted, "too many reports"), RetryAfter: 30 * time.Second},
			"sending report r1: the server at 10.0.0.5:8140 is busy (too many reports) and asks to be retried after 30s"},
		{"refused cert", rpcError("checking in", status.Error(codes.Unauthenticated, "certificate revoked"), nil),
			"checking in: the server at 10.0.0.5:8140 refused this node's certificate (certificate revoked)"},
		{"other", rpcError("checking in", status.Error(codes.Internal, "store:\nlocked"), nil),
			"checking in: the server at 10.0.0.5:8140 failed: store: locked"},
		{"not grpc", errors.New("facts: reading /proc: denied"), "facts: reading /proc: denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := serverTrouble("10.0.0.5:8140", tt.err); got != tt.want {
				t.Errorf("serverTrouble(%v) =\n%q, want\n%q", tt.err, got, tt.want)
			}
		})
	}
}

// logRecords is a slog handler that keeps every record, and signals
// added after each; it passes each on to the test's log too.
type logRecords struct {
	mu    sync.Mutex
	recs  []slog.Record
	added chan struct{}
	next  slog.Handler
}

func newLogRecords(t *testing.T) *logRecords {
	return &logRecords{added: make(chan struct{}, 1), next: testLog(t).Handler()}
}

func (h *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecords) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.recs = append(h.recs, r.Clone())
	h.mu.Unlock()
	_ = h.next.Handle(context.Background(), r)
	select {
	case h.added <- struct{}{}:
	default:
	}
	return nil
}
func (h *logRecords) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecords) WithGroup(string) slog.Handler      { return h }

// warnings returns the warnings so far, each as its message and its
// attributes, as a log line says them.
func (h *logRecords) warnings() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range h.recs {
		if r.Level < slog.LevelWarn {
			continue
		}
		var line strings.Builder
		line.WriteString(r.Message)
		r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&line, " %s=%v", a.Key, a.Value); return true })
		out = append(out, line.String())
	}
	return out
}

// TestEnrollUnreachableLog: an agent enrolling with a server that is not
// there logs, while it retries, which server it tried, why it failed and
// when it asks again, in words.
func TestEnrollUnreachableLog(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now: connection refused
	logs := newLogRecords(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := Enroll(ctx, EnrollOptions{Server: addr, Name: "web-01", JoinToken: "t", Dir: t.TempDir(), Log: slog.New(logs)})
		done <- err
	}()
	retry := func() string {
		for _, w := range logs.warnings() {
			if !strings.Contains(w, "no CA pinned") {
				return w
			}
		}
		return ""
	}
	for retry() == "" {
		select {
		case <-logs.added:
		case err := <-done:
			t.Fatalf("Enroll with no server returned %v before logging a retry", err)
		}
	}
	cancel()
	<-done
	line := retry()
	want := "enrolling: cannot reach the server at " + addr + " (connection refused); asking again in "
	if !strings.HasPrefix(line, want) || strings.Contains(line, "rpc error") || !strings.Contains(line, "retry_in=") {
		t.Errorf("the retry is logged as\n%s\nwant a message starting %q, a retry_in, and no grpc error text", line, want)
	}
}

// FuzzServerTrouble: whatever a server or grpc says, the sentence names
// the call and the server, stays on one line and never panics.
func FuzzServerTrouble(f *testing.F) {
	f.Add(uint8(codes.Unavailable), `connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:1: connect: connection refused"`)
	f.Add(uint8(codes.DeadlineExceeded), "")
	f.Add(uint8(codes.Internal), "line one\nline two\r\n")
	f.Add(uint8(codes.Unauthenticated), `desc = "`)
	f.Fuzz(func(t *testing.T, code uint8, msg string) {
		c := codes.Code(code % 17)
		if c == codes.OK {
			return
		}
		got := serverTrouble("10.0.0.5:8140", rpcError("checking in", status.Error(c, msg), nil))
		if !strings.HasPrefix(got, "checking in: ") || !strings.Contains(got, "10.0.0.5:8140") || strings.ContainsAny(got, "\n\r") {
			t.Fatalf("serverTrouble(%v, %q) = %q", c, msg, got)
		}
	})
}

// TestDaemonUnreachableFirstRun: an agent whose server is gone before it
// ever had a catalog says which server, why, that nothing ran and when it
// asks again.
func TestDaemonUnreachableFirstRun(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t)
	logs := newLogRecords(t)
	a := newTestAgent(t, fs, func(o *DaemonOptions) { o.Log = slog.New(logs) })
	fs.stop()
	a.start(t)
	a.awaitRun(t, "the first run", anyRun)
	want := regexp.MustCompile(`^checking in: cannot reach the server at ` + regexp.QuoteMeta(fs.addr) +
		` \([^)]+\); there is no cached catalog to apply, so nothing ran; checking in again in \S+ `)
	for _, w := range logs.warnings() {
		if want.MatchString(w) {
			return
		}
	}
	t.Errorf("no warning matches %s; the warnings:\n%s", want, strings.Join(logs.warnings(), "\n"))
}
