package store

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// The events table has no column for an event's source: the source
// rides in the changes column, so that reports gained it without a
// migration. A row whose event names its source keeps there the object
// {"source": S, "changes": C} (C left out when the event changed
// nothing); any other row keeps its changes as they came (a JSON array,
// or NULL), as every row stored before sources did, and reads back with
// no source.
type packedChanges struct {
	Source  string          `json:"source"`
	Changes json.RawMessage `json:"changes,omitempty"`
}

// packChanges is what the changes column keeps for an event with these
// changes (JSON the server made) and this source.
func packChanges(changes []byte, source string) ([]byte, error) {
	// Changes that are an object themselves are packed too, with an
	// empty source, so that reading them back is never ambiguous.
	if source == "" && !isObject(changes) {
		return changes, nil
	}
	b, err := json.Marshal(packedChanges{Source: source, Changes: changes})
	if err != nil {
		return nil, fmt.Errorf("packing the changes with the source: the changes are not JSON: %w", err)
	}
	return b, nil
}

// unpackChanges reads what packChanges made.
func unpackChanges(b []byte) (changes []byte, source string, err error) {
	if !isObject(b) {
		return b, "", nil
	}
	var p packedChanges
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, "", fmt.Errorf("reading the changes column: %w", err)
	}
	if len(p.Changes) == 0 {
		return nil, p.Source, nil
	}
	return p.Changes, p.Source, nil
}

func isObject(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && b[0] == '{'
}
