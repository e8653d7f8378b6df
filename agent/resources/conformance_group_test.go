package resources

import "testing"

// groupConformance returns the group type's conformance cases.
func groupConformance(t *testing.T) []conformanceCase {
	return nil
}
