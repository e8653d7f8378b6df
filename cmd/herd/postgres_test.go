package main

import (
	"os"
	"testing"

	"github.com/herdcm/herd/testkit"
)

// TestMain stops the PostgreSQL cluster testkit.Postgres may have started.
func TestMain(m *testing.M) {
	code := m.Run()
	testkit.StopPostgres()
	os.Exit(code)
}
