package resources

import "testing"

// fileConformance returns the file type's conformance cases.
func fileConformance(t *testing.T) []conformanceCase {
	return nil
}
