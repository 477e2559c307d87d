package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/gin-gonic/gin"
)

// The contract: web/openapi.json, the document /openapi.json serves, is
// checked against every exchange the web tests make with a server started
// by newEnv (see checkContract), so it cannot drift from the code. The
// tests below check the document itself and its list of routes.

// contract is the loaded document and two routers over its paths, which
// lead to two validators of kin-openapi. Through strict, the document as it
// is (openapi 3.1.0), answers are checked by its JSON Schema 2020-12
// validator, which compiles the schema again on every call (~1 ms, ten
// times that under the race detector). Through native, the same paths and
// schemas labelled 3.0, by kin-openapi's own validator, which understands
// this document's 3.1 constructs (type arrays with "null", anyOf, examples)
// and which the 2020-12 path itself falls back to for any schema that
// refers to a component: 30 times faster. Every exchange is checked with
// native; the first of each method, route and status also with strict.
type contract struct {
	doc            *openapi3.T
	strict, native routers.Router
	seen           sync.Map // "method path status" checked with strict
}

// loadContract reads and resolves the document once per test binary.
var loadContract = sync.OnceValues(func() (*contract, error) {
	b, err := os.ReadFile("openapi.json")
	if err != nil {
		return nil, err
	}
	doc, err := openapi3.NewLoader().LoadFromData(b)
	if err != nil {
		return nil, fmt.Errorf("openapi.json: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("openapi.json is not a valid document: %w", err)
	}
	strict, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("openapi.json: %w", err)
	}
	as30 := *doc
	as30.OpenAPI = "3.0.3"
	native, err := gorillamux.NewRouter(&as30)
	if err != nil {
		return nil, fmt.Errorf("openapi.json: %w", err)
	}
	return &contract{doc: doc, strict: strict, native: native}, nil
})

// mustContract returns the loaded document or fails the test.
func mustContract(t testing.TB) *contract {
	t.Helper()
	c, err := loadContract()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// checkContract wraps h so that every exchange is validated against the
// document; a mismatch fails t with the method, path, status and the
// validator's error. Requests are validated only when the answer is 2xx:
// a request the server refused is by design not a valid one (bad JSON,
// wrong content type, 64 KiB bodies...). Answers are always validated,
// error answers included, each against the statuses its operation lists.
func checkContract(t testing.TB, h http.Handler) http.Handler {
	c := mustContract(t)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var reqBody bytes.Buffer
		if r.Body != nil {
			r.Body = struct {
				io.Reader
				io.Closer
			}{io.TeeReader(r.Body, &reqBody), r.Body}
		}
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(rec, r)
		if err := c.check(r, reqBody.Bytes(), rec.status, rec.Header(), rec.body.Bytes()); err != nil {
			t.Errorf("OpenAPI contract: %s %s -> %d: %v\nbody: %.300s", r.Method, r.URL, rec.status, err, rec.body.Bytes())
		}
	})
}

// recorder passes an answer through and keeps a copy of it.
type recorder struct {
	http.ResponseWriter
	status int
	wrote  bool
	body   bytes.Buffer
}

func (r *recorder) WriteHeader(status int) {
	if !r.wrote {
		r.status, r.wrote = status, true
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	r.body.Write(b)
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Flush() { http.NewResponseController(r.ResponseWriter).Flush() }

// Unwrap lets http.ResponseController reach the connection.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// statusClientGone is what the server records for a client that left
// before its answer: nobody receives it, so there is nothing to check.
const statusClientGone = 499

// check validates one exchange.
func (c *contract) check(r *http.Request, reqBody []byte, status int, h http.Header, body []byte) error {
	if status == statusClientGone {
		return nil
	}
	route, _, err := c.native.FindRoute(r)
	switch {
	case errors.Is(err, routers.ErrPathNotFound):
		return c.checkUnrouted(r, http.StatusNotFound, "NotFound", status, h, body)
	case errors.Is(err, routers.ErrMethodNotAllowed):
		return c.checkUnrouted(r, http.StatusMethodNotAllowed, "MethodNotAllowed", status, h, body)
	case err != nil:
		return err
	}
	if err := validate(c.native, r, reqBody, status, h, body); err != nil {
		return err
	}
	if _, done := c.seen.LoadOrStore(fmt.Sprint(r.Method, " ", route.Path, " ", status), true); done {
		return nil
	}
	if err := validate(c.strict, r, reqBody, status, h, body); err != nil {
		return fmt.Errorf("JSON Schema 2020-12: %w", err)
	}
	return nil
}

// validate checks one exchange with openapi3filter through router.
func validate(router routers.Router, r *http.Request, reqBody []byte, status int, h http.Header, body []byte) error {
	req := r.Clone(context.Background())
	req.Body = io.NopCloser(bytes.NewReader(reqBody))
	route, params, err := router.FindRoute(req)
	if err != nil {
		return err
	}
	reqOpts := &openapi3filter.Options{AuthenticationFunc: bearerPresent, MultiError: true}
	reqOpts.WithCustomSchemaErrorFunc(schemaError)
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: reqOpts}
	if status >= 200 && status < 300 {
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			return fmt.Errorf("the request (answered %d) does not match the document: %w", status, err)
		}
	}
	resOpts := &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}
	resOpts.WithCustomSchemaErrorFunc(schemaError)
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status, Header: h, Options: resOpts}
	out.SetBodyBytes(body)
	return openapi3filter.ValidateResponse(context.Background(), out)
}

// checkUnrouted checks the answer to a path or method the document does
// not list: the server must refuse it with want, in the envelope of the
// API the path belongs to (the document's components.responses name).
func (c *contract) checkUnrouted(req *http.Request, want int, name string, status int, h http.Header, body []byte) error {
	if status != want {
		return fmt.Errorf("%s %s is not in the document, but was answered %d, not %d", req.Method, req.URL.Path, status, want)
	}
	if p := req.URL.Path; p == "/v1" || strings.HasPrefix(p, "/v1/") {
		name = "Integration" + name
	}
	resp := c.doc.Components.Responses[name].Value
	mt := resp.Content.Get(h.Get("Content-Type"))
	if mt == nil {
		return fmt.Errorf("Content-Type %q is not that of components.responses.%s", h.Get("Content-Type"), name)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("body is not JSON: %w", err)
	}
	if err := mt.Schema.Value.VisitJSON(v); err != nil {
		return fmt.Errorf("components.responses.%s: %w", name, err)
	}
	return nil
}

// schemaError says where a value breaks the schema and why, without the
// validator's dump of the whole schema.
func schemaError(err *openapi3.SchemaError) string {
	return fmt.Sprintf("at /%s: %s", strings.Join(err.JSONPointer(), "/"), err.Reason)
}

// bearerPresent is the security check of request validation: the
// document's schemes are all bearer tokens, and a 2xx answer to an
// operation that needs one must have come with one.
func bearerPresent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	s := in.SecurityScheme
	if s.Type != "http" || !strings.EqualFold(s.Scheme, "bearer") {
		return fmt.Errorf("security scheme %s: only http bearer is known to the tests", in.SecuritySchemeName)
	}
	h := in.RequestValidationInput.Request.Header.Get("Authorization")
	if len(h) <= len("bearer ") || !strings.EqualFold(h[:len("bearer ")], "bearer ") {
		return errors.New("no Authorization: Bearer header")
	}
	return nil
}

func TestOpenAPIDocumentValid(t *testing.T) {
	c := mustContract(t)
	if c.doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi = %q, want 3.1.0", c.doc.OpenAPI)
	}
	// Every operation has an id (client generators name functions after
	// them) and lists the statuses it answers.
	ids := map[string]string{}
	for path, item := range c.doc.Paths.Map() {
		for method, op := range item.Operations() {
			where := method + " " + path
			if op.OperationID == "" {
				t.Errorf("%s has no operationId", where)
			} else if other, dup := ids[op.OperationID]; dup {
				t.Errorf("%s and %s share operationId %q", where, other, op.OperationID)
			}
			ids[op.OperationID] = where
			if op.Responses.Len() == 0 {
				t.Errorf("%s lists no answers", where)
			}
		}
	}
}

// TestOpenAPIRoutes checks that the document lists exactly the routes Gin
// serves, captchas on (the captcha routes exist only then).
func TestOpenAPIRoutes(t *testing.T) {
	c := mustContract(t)
	e := newEnv(t, guarded(true))
	engine, ok := e.Handler.(*gin.Engine)
	if !ok {
		t.Fatalf("web.New returned %T, not a Gin engine", e.Handler)
	}
	var served []string
	for _, r := range engine.Routes() {
		// Gin writes parameters as :name; OpenAPI as {name}.
		parts := strings.Split(r.Path, "/")
		for i, p := range parts {
			if name, ok := strings.CutPrefix(p, ":"); ok {
				parts[i] = "{" + name + "}"
			}
		}
		served = append(served, r.Method+" "+strings.Join(parts, "/"))
	}
	var documented []string
	for path, item := range c.doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+path)
		}
	}
	slices.Sort(served)
	slices.Sort(documented)
	for _, r := range served {
		if !slices.Contains(documented, r) {
			t.Errorf("%s is served but not in openapi.json", r)
		}
	}
	for _, r := range documented {
		if !slices.Contains(served, r) {
			t.Errorf("%s is in openapi.json but not served", r)
		}
	}
}

// TestOpenAPIServed checks GET /openapi.json: the embedded document,
// byte for byte, as JSON, revalidated by ETag.
func TestOpenAPIServed(t *testing.T) {
	e := newEnv(t)
	file, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	r := e.do("GET", "/openapi.json", nil)
	wantStatus(t, r, http.StatusOK)
	if !bytes.Equal(r.Body, file) {
		t.Errorf("GET /openapi.json is not web/openapi.json (%d bytes, want %d)", len(r.Body), len(file))
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-cache" {
		t.Errorf("Cache-Control = %q, want no-cache", cc)
	}
	etag := r.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	wantStatus(t, e.do("GET", "/openapi.json", nil, "If-None-Match", etag), http.StatusNotModified)
}

// TestOpenAPICatchesDrift makes sure the check can fail: answers that
// differ from the document in the ways code drifts (a field missing, one
// added, a wrong type, an undocumented status, a header missing) are
// refused.
func TestOpenAPICatchesDrift(t *testing.T) {
	c := mustContract(t)
	plain := http.Header{"Content-Type": {"application/json; charset=utf-8"}}
	noStore := http.Header{"Content-Type": {"application/json"}, "Cache-Control": {"no-store"}, "Date": {"Sun, 01 Mar 2026 12:00:00 GMT"}}
	pair := `{"token":"t","refresh_token":"r","date":"2026-03-01T12:00:00Z"}`
	tests := []struct {
		name         string
		method, path string
		reqBody      string
		status       int
		header       http.Header
		body         string
		wantAccepted bool
	}{
		{"OKTokenPair", "POST", "/v1/login_check", `{"username":"a","password":"b"}`, 200, noStore, pair, true},
		{"ErrDateMissing", "POST", "/v1/login_check", `{"username":"a","password":"b"}`, 200, noStore, `{"token":"t","refresh_token":"r"}`, false},
		{"ErrDateNotRFC3339", "POST", "/v1/login_check", `{"username":"a","password":"b"}`, 200, noStore, `{"token":"t","refresh_token":"r","date":"2026-03-01 12:00:00"}`, false},
		{"ErrFieldAdded", "POST", "/v1/login_check", `{"username":"a","password":"b"}`, 200, noStore, `{"token":"t","refresh_token":"r","date":"2026-03-01T12:00:00Z","user":1}`, false},
		{"ErrNoStoreMissing", "POST", "/v1/login_check", `{"username":"a","password":"b"}`, 200, http.Header{"Content-Type": {"application/json"}, "Date": {"x"}}, pair, false},
		{"ErrRequestInvalid", "POST", "/v1/login_check", `{"username":"a"}`, 200, noStore, pair, false},
		{"ErrUndocumentedStatus", "POST", "/v1/login_check", `{}`, 403, noStore, `{"errors":[{"error":403,"message":"Forbidden."}]}`, false},
		{"ErrLaravelShapeOnIntegration", "POST", "/v1/login_check", `{}`, 401, noStore, `{"message":"Unauthenticated."}`, false},
		{"ErrTwoIntegrationErrors", "POST", "/v1/login_check", `{}`, 400, noStore, `{"errors":[{"error":110,"message":"a"},{"error":111,"message":"b"}]}`, false},
		{"ErrNullNotAllowed", "GET", "/api/v1/users/self", "", 200, plain, `{"id":1,"login":"a","name":"a","parent_id":null,"permissions":[],"created_at":null,"updated_at":"2026-03-01 12:00:00","access_token_id":"x","can_update_password":true,"analytic_license":[]}`, false},
		{"OKNullAllowed", "GET", "/api/v1/users/self", "", 200, plain, `{"id":1,"login":"a","name":"a","parent_id":null,"permissions":[],"created_at":"2026-03-01 12:00:00","updated_at":"2026-03-01 12:00:00","access_token_id":"x","can_update_password":true,"analytic_license":[]}`, true},
		{"ErrRetryAfterMissing", "POST", "/api/v1/token", `{}`, 429, http.Header{"Content-Type": {"application/json"}, "Cache-Control": {"no-store"}, "X-Ratelimit-Reset": {"1"}}, `{"message":"Too Many Attempts."}`, false},
		{"ErrValidationShape", "POST", "/api/v1/token", `{}`, 422, noStore, `{"message":"The given data was invalid.","errors":{"login":"required"}}`, false},
		{"ErrUnknownPathWrongEnvelope", "GET", "/v1/nothing", "", 404, plain, `{"message":"Not found."}`, false},
		{"OKUnknownPath", "GET", "/v1/nothing", "", 404, plain, `{"errors":[{"error":404,"message":"Not found."}]}`, true},
		{"ErrUnknownPathAnswered", "GET", "/api/v1/nothing", "", 200, plain, `{}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.reqBody))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer x")
			// Both validators must see it the same way: the native one
			// that checks every exchange, and the 2020-12 one.
			fresh := &contract{doc: c.doc, strict: c.strict, native: c.native}
			errs := map[string]error{"native": fresh.check(req, []byte(tt.reqBody), tt.status, tt.header, []byte(tt.body))}
			if _, _, err := c.strict.FindRoute(req); err == nil {
				errs["JSON Schema 2020-12"] = validate(c.strict, req, []byte(tt.reqBody), tt.status, tt.header, []byte(tt.body))
			}
			for name, err := range errs {
				if tt.wantAccepted && err != nil {
					t.Errorf("%s: refused: %v", name, err)
				}
				if !tt.wantAccepted && err == nil {
					t.Errorf("%s: accepted, want refused", name)
				}
			}
		})
	}
}
