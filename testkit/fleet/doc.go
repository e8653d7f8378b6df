// Package fleet runs real Herd agents (and, with the server, fleets) for
// tests: it applies sites to sandbox hosts and asserts what they hold.
//
// It is apart from package testkit because it imports package agent, and
// agent's own packages use testkit's sandbox hosts and .deb builder in
// their tests.
package fleet
