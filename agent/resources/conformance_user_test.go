package resources

import "testing"

// userConformance returns the user type's conformance cases.
func userConformance(t *testing.T) []conformanceCase {
	return nil
}
