// Package testkit builds sites, hosts and fleets for tests.
//
// It is imported only by tests and benchmarks. Helpers take a testing.TB,
// call t.Helper(), write only under t.TempDir(), and fail the test on any
// error, so that a test reads as the scenario it checks.
package testkit
