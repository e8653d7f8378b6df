package resources

import "testing"

// packageConformance returns the package type's conformance cases.
func packageConformance(t *testing.T) []conformanceCase {
	return nil
}
