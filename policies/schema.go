package policies

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/herdcm/herd/catalogs"
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
` + catalogDefinitions + `,
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
var schemas = schemaSet("gate", inputSchema)

// schemaSet parses a schema of this package into a set of one: the
// input's.
func schemaSet(name, schema string) *ast.SchemaSet {
	var raw any
	if err := json.Unmarshal([]byte(schema), &raw); err != nil {
		panic("policies: the " + name + " input schema does not parse: " + err.Error())
	}
	ss := ast.NewSchemaSet()
	ss.Put(ast.SchemaRootRef, raw)
	return ss
}

// catalogDefinitions are the JSON schema definitions of a catalog
// (catalogs.Catalog's canonical encoding), of a list of its resources and
// of one resource,
// shared by the gate's and the audit's input schemas.
const catalogDefinitions = `    "catalog": {
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
    "resources": {"type": "array", "items": {"$ref": "#/definitions/resource"}},
    "resource": {
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
    }`

// auditSchema is the JSON schema of an audit control's input (see
// AuditInput): as inputSchema does for the gate, it makes a ref to a part
// of input that does not exist (input.reprot) a compile error with
// file:line, where it would quietly never fail the control. The catalog
// and the report are never null: OPA's type checker does not look into
// a union with null, and would let input.report.summary.faild pass.
const auditSchema = `{
  "type": "object",
  "properties": {
    "node": {"type": "string"},
    "facts": {"type": "object", "additionalProperties": true},
    "catalog": {"$ref": "#/definitions/catalog"},
    "resources": {"type": "object", "additionalProperties": {"$ref": "#/definitions/resource"}},
    "by_type": {"type": "object", "properties": {BY_TYPE}},
    "report": {"$ref": "#/definitions/report"},
    "drift": {
      "type": "array",
      "items": {
        "type": "object",
        "properties": {
          "id": {"type": "string"},
          "attrs": {
            "type": "array",
            "items": {
              "type": "object",
              "properties": {"name": {"type": "string"}, "from": {"type": "string"}, "to": {"type": "string"}},
              "additionalProperties": false
            }
          }
        },
        "additionalProperties": false
      }
    }
  },
  "additionalProperties": false,
  "definitions": {
` + catalogDefinitions + `,
    "report": {
      "type": "object",
      "properties": {
        "run_id": {"type": "string"},
        "version": {"type": "string"},
        "catalog_digest": {"type": "string"},
        "started_unix_ms": {"type": "integer"},
        "summary": {
          "type": "object",
          "properties": {
            "resources": {"type": "integer"},
            "in_sync": {"type": "integer"},
            "changed": {"type": "integer"},
            "failed": {"type": "integer"},
            "skipped": {"type": "integer"},
            "unknown": {"type": "integer"},
            "refreshed": {"type": "integer"}
          },
          "additionalProperties": false
        },
        "events": {
          "type": "array",
          "items": {
            "type": "object",
            "properties": {
              "id": {"type": "string"},
              "type": {"type": "string"},
              "status": {"type": "string"},
              "error": {"type": "string"},
              "cause": {"type": "string"}
            },
            "additionalProperties": false
          }
        }
      },
      "additionalProperties": false
    }
  }
}`

// auditSchemas holds auditSchema for the compiler, input.by_type with a
// property per resource type: OPA's type checker reads an object's
// properties and not its additionalProperties, and so checks
// input.by_type.fiel and r.atrs in `some r in input.by_type.file`, while
// input.resources[id] (keyed by id) is checked no deeper than its key.
var auditSchemas = func() *ast.SchemaSet {
	var props []string
	for _, t := range catalogs.TypeNames() {
		props = append(props, fmt.Sprintf("%q: {\"$ref\": \"#/definitions/resources\"}", t))
	}
	return schemaSet("audit", strings.Replace(auditSchema, "{BY_TYPE}", "{"+strings.Join(props, ", ")+"}", 1))
}()
