package testkit

import (
	"strings"
	"sync"
)

// SyncBuffer collects what a process or a logger writes while a test
// reads it: safe for concurrent writers and a reader, unlike
// bytes.Buffer.
type SyncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
