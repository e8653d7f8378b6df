package store

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestDeactivateActivate(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		path := testLoc(t)
		s := openAt(t, path, Options{})
		must(t, s.Checkin(ctx, "web-1", at(10), "1.0", at(20)))
		must(t, s.Checkin(ctx, "web-2", at(10), "1.0", at(20)))
		must(t, s.Flush(ctx))

		if ok, err := s.Deactivate(ctx, "web-1", at(100)); err != nil || !ok {
			t.Fatalf("Deactivate(web-1) = %v, %v; want true, nil", ok, err)
		}
		// A second deactivation keeps the first time.
		if ok, err := s.Deactivate(ctx, "web-1", at(200)); err != nil || !ok {
			t.Fatalf("Deactivate(web-1) again = %v, %v", ok, err)
		}
		if ok, err := s.Deactivate(ctx, "nobody", at(100)); err != nil || ok {
			t.Errorf("Deactivate(nobody) = %v, %v; want false, nil", ok, err)
		}
		n, _, err := s.Node(ctx, "web-1")
		if err != nil || !n.Deactivated.Equal(at(100)) {
			t.Errorf("Node(web-1).Deactivated = %v, %v; want %v", n.Deactivated, err, at(100))
		}
		got, err := s.Deactivated(ctx, time.Time{})
		if d := cmp.Diff(map[string]time.Time{"web-1": at(100)}, got); err != nil || d != "" {
			t.Errorf("Deactivated(all) = %v (-want +got):\n%s", err, d)
		}
		if got, _ := s.Deactivated(ctx, at(100)); len(got) != 0 {
			t.Errorf("Deactivated(before its time) = %v, want none", got)
		}

		// A check-in from before the deactivation, written late, leaves it
		// deactivated; one after it brings the node back, before and after
		// the writer writes it.
		must(t, s.Checkin(ctx, "web-1", at(50), "1.0", at(60)))
		must(t, s.Flush(ctx))
		if n, _, _ := s.Node(ctx, "web-1"); !n.Deactivated.Equal(at(100)) {
			t.Errorf("after an older check-in, Deactivated = %v, want %v", n.Deactivated, at(100))
		}
		s.Close()
		s = openAt(t, path, Options{CheckinDelay: time.Hour})
		if n, _, _ := s.Node(ctx, "web-1"); !n.Deactivated.Equal(at(100)) {
			t.Errorf("after reopening, Deactivated = %v, want %v", n.Deactivated, at(100))
		}
		must(t, s.Checkin(ctx, "web-1", at(150), "1.0", at(160)))
		if n, _, _ := s.Node(ctx, "web-1"); !n.Deactivated.IsZero() {
			t.Errorf("with a newer check-in pending, Deactivated = %v, want zero", n.Deactivated)
		}
		if got, _ := s.Deactivated(ctx, time.Time{}); len(got) != 0 {
			t.Errorf("with a newer check-in pending, Deactivated(all) = %v, want none", got)
		}
		must(t, s.Flush(ctx))
		if n, _, _ := s.Node(ctx, "web-1"); !n.Deactivated.IsZero() {
			t.Errorf("after a newer check-in, Deactivated = %v, want zero", n.Deactivated)
		}

		if _, err := s.Deactivate(ctx, "web-2", at(300)); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.Activate(ctx, "web-2"); err != nil || !ok {
			t.Fatalf("Activate(web-2) = %v, %v", ok, err)
		}
		if n, _, _ := s.Node(ctx, "web-2"); !n.Deactivated.IsZero() {
			t.Errorf("after Activate, Deactivated = %v, want zero", n.Deactivated)
		}
		if ok, err := s.Activate(ctx, "nobody"); err != nil || ok {
			t.Errorf("Activate(nobody) = %v, %v; want false, nil", ok, err)
		}
	})
}

func TestIdle(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := openAt(t, testLoc(t), Options{CheckinDelay: time.Hour})
		must(t, s.Checkin(ctx, "old", at(10), "1.0", at(20)))
		must(t, s.Checkin(ctx, "new", at(500), "1.0", at(520)))
		must(t, s.Checkin(ctx, "gone", at(10), "1.0", at(20)))
		// Facts but never a check-in: idle from when it was first seen.
		must(t, s.SaveFacts(ctx, "facts-only", "sha256:f", []byte(`{}`), at(20)))
		must(t, s.Checkin(ctx, "revived", at(10), "1.0", at(20)))
		must(t, s.Flush(ctx))
		if _, err := s.Deactivate(ctx, "gone", at(30)); err != nil {
			t.Fatal(err)
		}
		// A check-in the writer has not written yet counts.
		must(t, s.Checkin(ctx, "revived", at(450), "1.0", at(460)))

		got, err := s.Idle(ctx, at(400))
		if d := cmp.Diff([]string{"facts-only", "old"}, got); err != nil || d != "" {
			t.Errorf("Idle(400) = %v (-want +got):\n%s", err, d)
		}
	})
}

func TestPurge(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := openAt(t, testLoc(t), Options{CheckinDelay: time.Hour})
		for _, node := range []string{"web-1", "web-2"} {
			for i := range 3 {
				r := Report{RunID: node + "-" + string(rune('a'+i)), Started: at(i), Received: at(i),
					Events: []Event{{ID: "file:/x", Type: "file", Status: "changed"}}}
				if i == 0 {
					// Stored before migration 14: its event is a row
					// of the events table.
					saveLegacyReport(t, s, node, r)
				} else if _, err := s.SaveReport(ctx, node, r); err != nil {
					t.Fatal(err)
				}
			}
			must(t, s.SaveCatalog(ctx, node, "sha256:c-"+node, "v1", []byte(`{}`), nil))
			if _, err := s.PutNodeKey(ctx, node, make([]byte, 32), at(1)); err != nil {
				t.Fatal(err)
			}
		}
		// web-1 has facts of its own, and facts it shares with web-2.
		must(t, s.SaveFacts(ctx, "web-1", "sha256:own", []byte(`{"own":1}`), at(1)))
		must(t, s.SaveFacts(ctx, "web-1", "sha256:shared", []byte(`{"shared":1}`), at(2)))
		must(t, s.SaveFacts(ctx, "web-2", "sha256:shared", []byte(`{"shared":1}`), at(2)))
		r := Rollout{Version: "v2", State: "running", Created: at(1), Updated: at(1), Stages: []RolloutStage{{Name: "all", State: "releasing"}}}
		if _, err := s.WriteRollout(ctx, RolloutWrite{Rollout: &r, Nodes: []RolloutNode{
			{Node: "web-1", Stage: 0, Rehearse: -1, Decision: "allowed", State: "pending"},
			{Node: "web-2", Stage: 0, Rehearse: -1, Decision: "allowed", State: "pending"},
		}}); err != nil {
			t.Fatal(err)
		}
		// A check-in waiting to be written must not bring web-1 back.
		must(t, s.Checkin(ctx, "web-1", at(5), "1.0", at(6)))

		if ok, err := s.Purge(ctx, "web-1"); err != nil || !ok {
			t.Fatalf("Purge(web-1) = %v, %v; want true, nil", ok, err)
		}
		must(t, s.Flush(ctx))
		if _, ok, _ := s.Node(ctx, "web-1"); ok {
			t.Error("web-1 is still a node after Purge")
		}
		counts := map[string]string{
			"nodes":         `SELECT COUNT(*) FROM nodes WHERE name = 'web-1'`,
			"reports":       `SELECT COUNT(*) FROM reports WHERE node = 'web-1'`,
			"events":        `SELECT COUNT(*) FROM events`,
			"facts_latest":  `SELECT COUNT(*) FROM facts_latest WHERE node = 'web-1'`,
			"facts_history": `SELECT COUNT(*) FROM facts_history WHERE node = 'web-1'`,
			"node_catalogs": `SELECT COUNT(*) FROM node_catalogs WHERE node = 'web-1'`,
			"rollout_nodes": `SELECT COUNT(*) FROM rollout_nodes WHERE node = 'web-1'`,
			"own facts":     `SELECT COUNT(*) FROM facts_blobs WHERE digest = 'sha256:own'`,
			"shared facts":  `SELECT COUNT(*) FROM facts_blobs WHERE digest = 'sha256:shared'`,
			"web-2 reports": `SELECT COUNT(*) FROM reports WHERE node = 'web-2'`,
			"web-2 rollout": `SELECT COUNT(*) FROM rollout_nodes WHERE node = 'web-2'`,
			"node_keys":     `SELECT COUNT(*) FROM node_keys WHERE name = 'web-1'`,
			"web-2 key":     `SELECT COUNT(*) FROM node_keys WHERE name = 'web-2'`,
		}
		want := map[string]int{"events": 1, "shared facts": 1, "web-2 reports": 3, "web-2 rollout": 1, "web-2 key": 1}
		got := map[string]int{}
		for name, q := range counts {
			var n int
			if err := s.rdb.QueryRow(q).Scan(&n); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			got[name] = n
			if _, ok := want[name]; !ok {
				want[name] = 0
			}
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("rows after Purge(web-1) (-want +got):\n%s", d)
		}
		if ok, err := s.Purge(ctx, "web-1"); err != nil || ok {
			t.Errorf("Purge(web-1) again = %v, %v; want false, nil", ok, err)
		}
	})
}
