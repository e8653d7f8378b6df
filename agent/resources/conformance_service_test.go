package resources

import "testing"

// serviceConformance returns the service type's conformance cases.
func serviceConformance(t *testing.T) []conformanceCase {
	return nil
}
