package server

import (
	"context"
	"testing"
	"time"

	"github.com/herdcm/herd/api/herdv1"
)

// TestBakeEndAsksANodeWatchingOnAFollower: when a canary's bake ends the
// rollout leader asks the canary for a fresh run (its final report), and
// the canary's agent hears it on whichever server holds its Watch stream:
// here a follower. Without the ask reaching it the stage stays baking
// until the node's next scheduled check-in.
func TestBakeEndAsksANodeWatchingOnAFollower(t *testing.T) {
	t.Parallel()
	stages := "[[rollout.stage]]\nname = \"canary\"\nnodes = [\"n-0\"]\nbake = \"1s\"\n"
	ss, sites := startClusterOf(t, 2, rolloutSite(stages, "hello"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var leader, follower *Server
	for leader == nil {
		for i, s := range ss {
			if s.rolloutLead.Leading() {
				leader, follower = s, ss[1-i]
			}
		}
		if ctx.Err() != nil {
			t.Fatal("no server leads the rollouts")
		}
		time.Sleep(20 * time.Millisecond)
	}
	facts := map[string]any{"os": map[string]any{"family": "debian"}}
	cert := enroll(t, follower, "n-0")
	nc := herdv1.NewNodeClient(dial(t, follower, &cert))
	first := checkin(t, nc, facts, "")
	if first.Status != herdv1.CheckinResponse_NEW_CATALOG {
		t.Fatalf("first check-in on the follower = %v, want NEW_CATALOG", first.Status)
	}
	runs := 0
	report := func(etag string) {
		t.Helper()
		runs++
		r := &herdv1.Report{RunId: "n-0-" + string(rune('a'+runs)), CatalogDigest: etag, StartedUnixNs: time.Now().UnixNano(),
			Summary: &herdv1.Summary{Resources: 1, InSync: 1}}
		if _, err := nc.SendReport(ctx, &herdv1.SendReportRequest{Report: r}); err != nil {
			t.Fatal(err)
		}
	}
	report(first.Etag)
	stream := openWatch(ctx, t, follower, nc, first.Etag)

	for _, site := range sites {
		writeFiles(t, site, map[string]string{"data/common.toml": "greeting = \"good morning\"\n"})
	}
	ev, err := stream.Recv()
	if err != nil || ev.Etag == first.Etag || ev.Etag == "" {
		t.Fatalf("Watch on the follower after the commit = %v, %v; want the canary's new catalog", ev, err)
	}
	report(ev.Etag)
	// The bake ends a second later: the leader asks for the final run.
	got := make(chan *herdv1.WatchEvent, 1)
	go func() {
		for {
			ev, err := stream.Recv()
			if err != nil {
				close(got)
				return
			}
			if ev.Run {
				got <- ev
				return
			}
		}
	}()
	wait := 15 * time.Second
	select {
	case ev, ok := <-got:
		if !ok {
			t.Fatal("the Watch stream ended before the bake's run was asked")
		}
		t.Logf("asked for a run: %v", ev)
	case <-time.After(wait):
		r, _, _ := leader.st.Rollout(ctx, 0)
		t.Fatalf("the canary watching on the follower was not asked for a run within %s of its report (bake 1s); rollout %d %s, stages %+v", wait, r.ID, r.State, r.Stages)
	}
	report(ev.Etag)
	for {
		r, ok, err := leader.st.Rollout(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		if ok && r.State == rolloutDone {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("rollout %d %s after the final report; want done", r.ID, r.State)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
