package resources

import "testing"

// execConformance returns the exec type's conformance cases.
func execConformance(t *testing.T) []conformanceCase {
	return nil
}
