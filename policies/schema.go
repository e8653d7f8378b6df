package policies

import (
	"encoding/json"

	"github.com/open-policy-agent/opa/v1/ast"
)

// inputSchema is the JSON schema of a gate's input. With it OPA's type
// checker refuses, at compile time with file:line, a rule that reads a
// part of input that does not exist (input.catalog.resorces): such a rule
// would never fire, and a deny rule that never fires lets everything
// through. Facts and resource attributes are open: their keys vary.
const inputSchema = `{
  "type": "object",
  "properties": {
    "node": {"type": "string"},
    "judge": {"$ref": "#/definitions/resources"},
    "facts": {"type": "object", "additionalProperties": true},
    "catalog": {"$ref": "#/definitions/catalog"},
    "previous": {"anyOf": [{"$ref": "#/definitions/catalog"}, {"type": "null"}]},
    "change": {
      "type": "object",
      "properties": {
        "added": {"$ref": "#/definitions/changes"},
        "removed": {"$ref": "#/definitions/changes"},
        "changed": {"$ref": "#/definitions/changes"}
      },
      "additionalProperties": false
    },
    "fleet": {
      "type": "object",
      "properties": {
        "version": {"type": "string"},
        "previous_version": {"type": "string"},
        "nodes": {"type": "integer"},
        "changing": {"type": "integer"},
        "resources": {
          "type": "object",
          "additionalProperties": {
            "type": "object",
            "properties": {"added": {"type": "integer"}, "removed": {"type": "integer"}, "changed": {"type": "integer"}},
            "additionalProperties": false
          }
        },
        "packages": {
          "type": "object",
          "additionalProperties": {
            "type": "object",
            "properties": {
              "nodes": {"type": "integer"},
              "versions": {"type": "object", "additionalProperties": {"type": "integer"}}
            },
            "additionalProperties": false
          }
        }
      },
      "additionalProperties": false
    }
  },
  "additionalProperties": false,
  "definitions": {
    "catalog": {
      "type": "object",
      "properties": {
        "environment": {"type": "string"},
        "node": {"type": "string"},
        "version": {"type": "string"},
        "files": {
          "type": "array",
          "items": {
            "type": "object",
            "properties": {"digest": {"type": "string"}, "path": {"type": "string"}, "size": {"type": "integer"}},
            "additionalProperties": false
          }
        },
        "resources": {"$ref": "#/definitions/resources"}
      },
      "additionalProperties": false
    },
    "resources": {
      "type": "array",
      "items": {
        "type": "object",
        "properties": {
          "attrs": {"type": "object", "additionalProperties": true},
          "id": {"type": "string"},
          "name": {"type": "string"},
          "type": {"type": "string"},
          "source": {"type": "string"},
          "notify": {"type": "array", "items": {"type": "string"}},
          "require": {"type": "array", "items": {"type": "string"}}
        },
        "additionalProperties": false
      }
    },
    "changes": {
      "type": "array",
      "items": {
        "type": "object",
        "properties": {
          "id": {"type": "string"},
          "type": {"type": "string"},
          "name": {"type": "string"},
          "attrs": {
            "type": "array",
            "items": {
              "type": "object",
              "properties": {"name": {"type": "string"}, "from": {}, "to": {}, "diff": {"type": "string"}},
              "additionalProperties": false
            }
          }
        },
        "additionalProperties": false
      }
    }
  }
}`

// schemas holds inputSchema for the compiler.
var schemas = func() *ast.SchemaSet {
	var raw any
	if err := json.Unmarshal([]byte(inputSchema), &raw); err != nil {
		panic("policies: the input schema does not parse: " + err.Error())
	}
	ss := ast.NewSchemaSet()
	ss.Put(ast.SchemaRootRef, raw)
	return ss
}()
