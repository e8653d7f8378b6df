package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/herdcm/herd/api/herdv1"
)

// The JSON API (docs/api.md) is the Admin service's read calls over
// HTTP: each handler calls the same adminService method `herd nodes`
// and `herd facts` reach over gRPC, so filters, paging and errors are
// the same. Messages are proto3 JSON with the .proto's field names;
// facts and catalogs, JSON in bytes fields on the wire, are inlined.

// apiRoutes registers the API's endpoints on mux.
func (s *Server) apiRoutes(mux *http.ServeMux) {
	a := &adminService{s: s}
	mux.HandleFunc("GET /api/v1/nodes", func(w http.ResponseWriter, r *http.Request) {
		q, err := apiQuery(r, "where", "inactive", "page_size", "page_token")
		if err != nil {
			writeAPIError(w, http.StatusBadRequest, err.Error())
			return
		}
		req := &herdv1.ListNodesRequest{Where: q.str("where"), Inactive: q.bool("inactive"), PageSize: q.int("page_size"), PageToken: q.str("page_token")}
		if q.err != nil {
			writeAPIError(w, http.StatusBadRequest, q.err.Error())
			return
		}
		resp, err := a.ListNodes(r.Context(), req)
		writeAPIProto(w, resp, err)
	})
	mux.HandleFunc("GET /api/v1/nodes/{name}/facts", func(w http.ResponseWriter, r *http.Request) {
		if _, err := apiQuery(r); err != nil {
			writeAPIError(w, http.StatusBadRequest, err.Error())
			return
		}
		name := r.PathValue("name")
		resp, err := a.GetFacts(r.Context(), &herdv1.GetFactsRequest{Node: name})
		if err != nil {
			writeAPIStatus(w, err)
			return
		}
		writeAPIJSON(w, struct {
			Node          string          `json:"node"`
			UpdatedUnixMs int64           `json:"updated_unix_ms"`
			Facts         json.RawMessage `json:"facts"`
		}{name, resp.UpdatedUnixMs, resp.FactsJson})
	})
	mux.HandleFunc("GET /api/v1/nodes/{name}/reports", func(w http.ResponseWriter, r *http.Request) {
		q, err := apiQuery(r, "page_size", "page_token")
		if err != nil {
			writeAPIError(w, http.StatusBadRequest, err.Error())
			return
		}
		req := &herdv1.ListReportsRequest{Node: r.PathValue("name"), PageSize: q.int("page_size"), PageToken: q.str("page_token")}
		if q.err != nil {
			writeAPIError(w, http.StatusBadRequest, q.err.Error())
			return
		}
		resp, err := a.ListReports(r.Context(), req)
		writeAPIProto(w, resp, err)
	})
	mux.HandleFunc("GET /api/v1/nodes/{name}/catalog", func(w http.ResponseWriter, r *http.Request) {
		if _, err := apiQuery(r); err != nil {
			writeAPIError(w, http.StatusBadRequest, err.Error())
			return
		}
		name := r.PathValue("name")
		resp, err := a.GetCatalog(r.Context(), &herdv1.GetCatalogRequest{Node: name})
		if err != nil {
			writeAPIStatus(w, err)
			return
		}
		// The etag is the canonical catalog's; the body is its view,
		// with every sensitive value shown as {"sensitive": true, …}.
		view, err := catalogView(resp.Catalog)
		if err != nil {
			writeAPIError(w, http.StatusInternalServerError, "reading the catalog: "+err.Error())
			return
		}
		writeAPIJSON(w, struct {
			Node    string          `json:"node"`
			Etag    string          `json:"etag"`
			Catalog json.RawMessage `json:"catalog"`
		}{name, resp.Etag, view})
	})
	mux.HandleFunc("GET /api/v1/facts", func(w http.ResponseWriter, r *http.Request) {
		q, err := apiQuery(r, "fact", "where", "inactive", "page_size", "page_token")
		if err != nil {
			writeAPIError(w, http.StatusBadRequest, err.Error())
			return
		}
		req := &herdv1.FleetFactsRequest{Fact: q.str("fact"), Where: q.str("where"), Inactive: q.bool("inactive"), PageSize: q.int("page_size"), PageToken: q.str("page_token")}
		if q.err != nil {
			writeAPIError(w, http.StatusBadRequest, q.err.Error())
			return
		}
		resp, err := a.FleetFacts(r.Context(), req)
		if err != nil {
			writeAPIStatus(w, err)
			return
		}
		// A node without the fact says so, as herd facts --all --json
		// does: a fact whose value is null is not missing.
		type fact struct {
			Node    string          `json:"node"`
			Value   json.RawMessage `json:"value,omitempty"`
			Missing bool            `json:"missing,omitempty"`
		}
		out := struct {
			Facts         []fact `json:"facts"`
			NextPageToken string `json:"next_page_token"`
		}{Facts: []fact{}, NextPageToken: resp.NextPageToken}
		for _, f := range resp.Facts {
			out.Facts = append(out.Facts, fact{f.Node, f.ValueJson, len(f.ValueJson) == 0})
		}
		writeAPIJSON(w, out)
	})
	mux.HandleFunc("GET /api/v1/rollouts", func(w http.ResponseWriter, r *http.Request) {
		q, err := apiQuery(r, "page_size", "page_token")
		if err != nil {
			writeAPIError(w, http.StatusBadRequest, err.Error())
			return
		}
		req := &herdv1.ListRolloutsRequest{PageSize: q.int("page_size"), PageToken: q.str("page_token")}
		if q.err != nil {
			writeAPIError(w, http.StatusBadRequest, q.err.Error())
			return
		}
		resp, err := a.ListRollouts(r.Context(), req)
		writeAPIProto(w, resp, err)
	})
	mux.HandleFunc("GET /api/v1/rollouts/{id}", func(w http.ResponseWriter, r *http.Request) {
		q, err := apiQuery(r, "nodes", "page_size", "page_token")
		if err != nil {
			writeAPIError(w, http.StatusBadRequest, err.Error())
			return
		}
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if err != nil || id <= 0 {
			writeAPIError(w, http.StatusBadRequest, fmt.Sprintf("rollout id %q: want a positive number", r.PathValue("id")))
			return
		}
		req := &herdv1.GetRolloutRequest{Id: id, Nodes: q.str("nodes"), PageSize: q.int("page_size"), PageToken: q.str("page_token")}
		if q.err != nil {
			writeAPIError(w, http.StatusBadRequest, q.err.Error())
			return
		}
		resp, err := a.GetRollout(r.Context(), req)
		writeAPIProto(w, resp, err)
	})
	mux.HandleFunc("GET /api/v1/audits", func(w http.ResponseWriter, r *http.Request) {
		q, err := apiQuery(r, "control", "node", "at", "page_size", "page_token")
		if err != nil {
			writeAPIError(w, http.StatusBadRequest, err.Error())
			return
		}
		req := &herdv1.AuditRequest{Control: q.str("control"), Node: q.str("node"), AtUnixMs: q.time("at"), PageSize: q.int("page_size"), PageToken: q.str("page_token")}
		if q.err != nil {
			writeAPIError(w, http.StatusBadRequest, q.err.Error())
			return
		}
		resp, err := a.Audit(r.Context(), req)
		writeAPIProto(w, resp, err)
	})
}

// apiMarshal is the API's encoding of Admin messages: proto3 JSON with
// the .proto's snake_case names (int64 fields are strings, as proto3
// JSON has them), every field present, so that a script sees the same
// shape whether a list is empty or a field is zero.
var apiMarshal = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}

// apiParams are a request's query parameters; the first malformed one's
// error is kept in err.
type apiParams struct {
	v   url.Values
	err error
}

// apiQuery parses r's query, refusing parameters not in allowed (a
// filter misspelt must not quietly list everything) and repeated ones.
func apiQuery(r *http.Request, allowed ...string) (*apiParams, error) {
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("the query: %v", err)
	}
	for k, vs := range v {
		ok := false
		for _, a := range allowed {
			ok = ok || a == k
		}
		if !ok {
			if len(allowed) == 0 {
				return nil, fmt.Errorf("unknown query parameter %q: %s takes none", k, r.URL.Path)
			}
			return nil, fmt.Errorf("unknown query parameter %q: %s takes %v", k, r.URL.Path, allowed)
		}
		if len(vs) != 1 {
			return nil, fmt.Errorf("query parameter %q given %d times", k, len(vs))
		}
	}
	return &apiParams{v: v}, nil
}

func (p *apiParams) str(k string) string { return p.v.Get(k) }

func (p *apiParams) bool(k string) bool {
	s := p.v.Get(k)
	if s == "" {
		return false
	}
	b, err := strconv.ParseBool(s)
	if err != nil && p.err == nil {
		p.err = fmt.Errorf("query parameter %s=%q: want true or false", k, s)
	}
	return b
}

// time reads an instant as Unix milliseconds or RFC 3339; 0 when absent.
func (p *apiParams) time(k string) int64 {
	s := p.v.Get(k)
	if s == "" {
		return 0
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil && ms > 0 {
		return ms
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		if p.err == nil {
			p.err = fmt.Errorf("query parameter %s=%q: want Unix milliseconds or an RFC 3339 time like 2026-11-01T00:00:00Z", k, s)
		}
		return 0
	}
	return t.UnixMilli()
}

func (p *apiParams) int(k string) int32 {
	s := p.v.Get(k)
	if s == "" {
		return 0
	}
	n, err := strconv.ParseInt(s, 10, 32)
	if (err != nil || n <= 0) && p.err == nil {
		p.err = fmt.Errorf("query parameter %s=%q: want a positive number", k, s)
	}
	return int32(n)
}

// writeAPIProto writes resp, or err as the API's error.
func writeAPIProto(w http.ResponseWriter, resp proto.Message, err error) {
	if err != nil {
		writeAPIStatus(w, err)
		return
	}
	b, err := apiMarshal.Marshal(resp)
	if err != nil {
		writeAPIError(w, http.StatusInternalServerError, "encoding the answer: "+err.Error())
		return
	}
	writeAPIBytes(w, http.StatusOK, b)
}

func writeAPIJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeAPIError(w, http.StatusInternalServerError, "encoding the answer: "+err.Error())
		return
	}
	writeAPIBytes(w, http.StatusOK, b)
}

func writeAPIBytes(w http.ResponseWriter, code int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write(b)
	w.Write([]byte("\n"))
}

// writeAPIError writes {"error": msg} with code.
func writeAPIError(w http.ResponseWriter, code int, msg string) {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	writeAPIBytes(w, code, b)
}

// writeAPIStatus writes an Admin method's error with the HTTP status of
// its gRPC code.
func writeAPIStatus(w http.ResponseWriter, err error) {
	st, _ := status.FromError(err)
	code := http.StatusInternalServerError
	switch st.Code() {
	case codes.InvalidArgument, codes.OutOfRange:
		code = http.StatusBadRequest
	case codes.NotFound:
		code = http.StatusNotFound
	case codes.Unauthenticated:
		code = http.StatusUnauthorized
	case codes.PermissionDenied:
		code = http.StatusForbidden
	case codes.FailedPrecondition, codes.AlreadyExists, codes.Aborted:
		code = http.StatusConflict
	case codes.ResourceExhausted:
		code = http.StatusTooManyRequests
	case codes.Unavailable:
		code = http.StatusServiceUnavailable
	case codes.DeadlineExceeded, codes.Canceled:
		code = http.StatusGatewayTimeout
	}
	writeAPIError(w, code, st.Message())
}
