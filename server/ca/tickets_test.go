package ca_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/herdcm/herd/server/ca"
)

// TestTicketKeysRotate: the keys live in the CA directory (0600), a new
// key encrypts after a day while the old still decrypts, and a key is
// gone after three days.
func TestTicketKeysRotate(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	first, err := f.ca.TicketKeys()
	if err != nil || len(first) != 1 {
		t.Fatalf("TicketKeys = %d keys, %v; want 1", len(first), err)
	}
	fi, err := os.Stat(filepath.Join(f.dir, "ticket.keys"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("ticket.keys: %v, %v; want mode 0600", fi, err)
	}
	if again, _ := f.ca.TicketKeys(); len(again) != 1 || again[0] != first[0] {
		t.Errorf("TicketKeys within a day changed the keys")
	}
	// Another process (a restart) reads the same keys.
	if reopened, _ := f.open(t).TicketKeys(); len(reopened) != 1 || reopened[0] != first[0] {
		t.Errorf("TicketKeys after reopening = %d keys, not the stored one", len(reopened))
	}
	f.clock.Add(ca.TicketKeyLife + time.Minute)
	second, _ := f.ca.TicketKeys()
	if len(second) != 2 || second[0] == first[0] || second[1] != first[0] {
		t.Fatalf("after a day: %d keys; want a new first key and the old one second", len(second))
	}
	f.clock.Add(2*ca.TicketKeyLife + time.Minute)
	third, _ := f.ca.TicketKeys()
	for _, k := range third {
		if k == first[0] {
			t.Errorf("the first key still decrypts after three days")
		}
	}
}
