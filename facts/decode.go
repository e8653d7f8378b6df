package facts

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// FromJSON decodes facts written as a JSON object (by `herd facts --json`,
// a test fixture or another tool). Whole numbers become int64 and others
// float64, the shapes collected facts have, so that a condition such as
// facts.processors.count >= 4 compares the same way on either.
func FromJSON(b []byte) (Facts, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("decoding facts: %w", err)
	}
	if m == nil {
		return nil, fmt.Errorf("decoding facts: want a JSON object")
	}
	return Facts(normalize(m).(map[string]any)), nil
}
