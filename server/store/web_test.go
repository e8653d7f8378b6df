package store

import (
	"context"
	"testing"
	"time"
)

// TestWebLoginsAndSessions: a login is stored and replaced; replacing it
// ends the name's sessions and no other's; a new session prunes expired
// ones; a deleted session is gone.
func TestWebLoginsAndSessions(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T) {
		t.Parallel()
		st := openTest(t)
		ctx := context.Background()
		now := time.Now()
		if _, ok, err := st.Login(ctx, "ops"); ok || err != nil {
			t.Fatalf("Login(ops) before any = %v, %v", ok, err)
		}
		for _, name := range []string{"ops", "audit"} {
			if err := st.PutLogin(ctx, name, "hash-1-"+name, now); err != nil {
				t.Fatal(err)
			}
		}
		for _, ws := range []WebSession{
			{ID: "s-ops", Name: "ops", Created: now, Expires: now.Add(time.Hour)},
			{ID: "s-audit", Name: "audit", Created: now, Expires: now.Add(time.Hour)},
			{ID: "s-old", Name: "audit", Created: now.Add(-2 * time.Hour), Expires: now.Add(-time.Hour)},
		} {
			if err := st.PutSession(ctx, ws); err != nil {
				t.Fatal(err)
			}
		}
		got, ok, err := st.Session(ctx, "s-ops")
		if err != nil || !ok || got.Name != "ops" || got.Expires.UnixNano() != now.Add(time.Hour).UnixNano() {
			t.Errorf("Session(s-ops) = %+v, %v, %v", got, ok, err)
		}
		// Replacing ops's password ends ops's sessions only.
		if err := st.PutLogin(ctx, "ops", "hash-2-ops", now); err != nil {
			t.Fatal(err)
		}
		if h, _, _ := st.Login(ctx, "ops"); h != "hash-2-ops" {
			t.Errorf("Login(ops) = %q after replacing, want hash-2-ops", h)
		}
		if _, ok, _ := st.Session(ctx, "s-ops"); ok {
			t.Error("ops's session outlived a new password")
		}
		if _, ok, _ := st.Session(ctx, "s-audit"); !ok {
			t.Error("audit's session ended with ops's password")
		}
		// A new session prunes the expired one (stored after it was made).
		if err := st.PutSession(ctx, WebSession{ID: "s-new", Name: "audit", Created: now, Expires: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := st.Session(ctx, "s-old"); ok {
			t.Error("an expired session survived a new one")
		}
		if err := st.DeleteSession(ctx, "s-audit"); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := st.Session(ctx, "s-audit"); ok {
			t.Error("a deleted session is still there")
		}
	})
}
