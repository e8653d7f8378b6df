package resources

import (
	"slices"
	"testing"

	"github.com/herdcm/herd/catalogs"
)

// TestTypesCoverTheSchema keeps the agent's types and the compiler's
// schemas in step: a type the compiler accepts must have an implementation.
func TestTypesCoverTheSchema(t *testing.T) {
	t.Parallel()
	var have []string
	for name := range Types() {
		have = append(have, name)
	}
	slices.Sort(have)
	if want := catalogs.TypeNames(); !slices.Equal(have, want) {
		t.Errorf("Types() = %v, want the compiler's %v", have, want)
	}
}
