package supervise

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Health is what the last health probes said about a service.
type Health string

// The health values.
const (
	// HealthUnknown: no health check, the service is not running, or no
	// probe has decided yet.
	HealthUnknown Health = "unknown"
	// HealthHealthy: the last probe passed.
	HealthHealthy Health = "healthy"
	// HealthUnhealthy: the last HealthCheck.Retries probes failed.
	HealthUnhealthy Health = "unhealthy"
)

// runHealth probes the service every interval until ctx ends, sending each
// result (nil when the probe passed) to out.
func runHealth(ctx context.Context, h HealthCheck, spec Spec, out chan<- error) {
	t := time.NewTicker(h.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, h.Timeout)
		err := probe(pctx, h, spec)
		cancel()
		if ctx.Err() != nil {
			return
		}
		select {
		case out <- err:
		case <-ctx.Done():
			return
		}
	}
}

// probe runs one health probe.
func probe(ctx context.Context, h HealthCheck, spec Spec) error {
	switch {
	case len(h.Exec) > 0:
		return probeExec(ctx, h.Exec, spec)
	case h.HTTP != "":
		return probeHTTP(ctx, h.HTTP)
	case h.TCP != "":
		return probeTCP(ctx, h.TCP)
	}
	return errors.New("no probe configured")
}

func probeExec(ctx context.Context, argv []string, spec Spec) error {
	path, err := lookPath(argv[0], spec.Env)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, path, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Env = serviceEnv(spec.Env)
	cmd.Dir = spec.Dir
	var out tailBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if spec.User != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: spec.User.UID, Gid: spec.User.GID, Groups: spec.User.Groups}
	}
	// On timeout kill the probe's whole process group, not only its shell.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	err = cmd.Run()
	if ctx.Err() != nil {
		return fmt.Errorf("exec %s: timed out", argv[0])
	}
	if err != nil {
		if o := strings.TrimSpace(out.String()); o != "" {
			return fmt.Errorf("exec %s: %w: %s", argv[0], err, o)
		}
		return fmt.Errorf("exec %s: %w", argv[0], err)
	}
	return nil
}

// healthClient keeps no idle connection: a probe every few seconds gains
// nothing from one, and a service restart would leave it dangling.
var healthClient = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

func probeHTTP(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("http %s: %w", url, err)
	}
	req.Header.Set("User-Agent", "herd-supervise")
	resp, err := healthClient.Do(req)
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 399 {
		return fmt.Errorf("http %s: %s", url, resp.Status)
	}
	return nil
}

func probeTCP(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("tcp: %w", err)
	}
	return c.Close()
}

// tailBuffer keeps the last few hundred bytes written to it: enough of a
// failing probe's output to say why.
type tailBuffer struct{ b []byte }

const tailMax = 512

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > tailMax {
		t.b = t.b[len(t.b)-tailMax:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	return string(bytes.ToValidUTF8(t.b, []byte("?")))
}
