package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"vmsauth/auth"
	"vmsauth/internal/testkit"
	"vmsauth/store/storetest"
	"vmsauth/web"
)

// env is one running vmsauth: a real store (bbolt unless
// storetest.EnvStore names another), real router, real HTTP.
type env struct {
	t     *testing.T
	URL   string
	Svc   *auth.Service
	DB    storetest.Backend
	Clock *testkit.Clock
	// Handler is the router, for tests that serve it their own way.
	Handler http.Handler
}

type envOption func(*auth.Config, *web.Options)

// newEnv starts the whole handler under httptest on a fresh database.
func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	return newEnvOver(t, nil, opts...)
}

// newEnvOver is newEnv with the service over wrap(db) rather than db
// itself, for tests that must order what happens inside the store.
func newEnvOver(t *testing.T, wrap func(storetest.Backend) auth.Store, opts ...envOption) *env {
	t.Helper()
	db := storetest.OpenForTest(t)
	clk := testkit.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	wopt := web.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	acfg := auth.Config{BcryptCost: bcrypt.MinCost, Now: clk.Now, Logger: wopt.Logger}
	for _, o := range opts {
		o(&acfg, &wopt)
	}
	var st auth.Store = db
	if wrap != nil {
		st = wrap(db)
	}
	svc, err := auth.New(st, acfg)
	if err != nil {
		t.Fatal(err)
	}
	// Rehashes a login started finish before the database closes.
	t.Cleanup(svc.Wait)
	h, err := web.New(svc, wopt)
	if err != nil {
		t.Fatal(err)
	}
	// Every exchange is checked against the OpenAPI document (openapi_test.go).
	srv := httptest.NewServer(checkContract(t, h))
	t.Cleanup(srv.Close)
	return &env{t: t, URL: srv.URL, Svc: svc, DB: db, Clock: clk, Handler: h}
}

// addUser creates a user with the given APIs and permissions; password is
// "password1".
func (e *env) addUser(login string, apis []auth.API, perms ...string) *auth.User {
	e.t.Helper()
	u, err := e.Svc.CreateUser(context.Background(), auth.Root, auth.NewUser{
		Login: login, Password: "password1", APIs: apis, Permissions: perms,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return u
}

// response is a finished HTTP exchange with its decoded JSON body.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into a generic value.
func (r response) JSON(t *testing.T) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(r.Body, &v); err != nil {
		t.Fatalf("body is not a JSON object: %v\n%s", err, r.Body)
	}
	return v
}

// do sends a request. body may be nil, a string (sent as is) or any value
// (sent as JSON). headers are name, value pairs.
func (e *env) do(method, path string, body any, headers ...string) response {
	e.t.Helper()
	r, err := e.send(method, path, body, headers...)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// send is do without failing the test, for goroutines other than the
// test's own, where t.Fatal must not be called.
func (e *env) send(method, path string, body any, headers ...string) (response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return response{}, err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.URL+path, rd)
	if err != nil {
		return response{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return roundTrip(req)
}

func roundTrip(req *http.Request) (response, error) {
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return response{}, err
	}
	return response{Status: res.StatusCode, Header: res.Header, Body: b}, nil
}

// wantStatus fails the test unless r has the status.
func wantStatus(t *testing.T, r response, status int) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status = %d, want %d; body: %s", r.Status, status, r.Body)
	}
}

// clientLogin logs in through the client API and returns the token.
func (e *env) clientLogin(login string, extra ...string) (string, map[string]any) {
	e.t.Helper()
	r := e.do("POST", "/api/v1/token", map[string]any{"login": login, "password": "password1"}, extra...)
	wantStatus(e.t, r, http.StatusOK)
	body := r.JSON(e.t)
	return body["access_token"].(string), body
}

// withT returns e bound to a subtest's t, so that helpers called inside the
// subtest fail the subtest rather than its parent.
func (e *env) withT(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}

// raw sends body with exactly the given headers: unlike do, it sets no
// Content-Type of its own, so a request can lack one.
func (e *env) raw(method, path, body string, headers ...string) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	r, err := roundTrip(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// authz returns the Authorization header for a bearer token, followed by
// any further name, value pairs, for do's headers.
func authz(token string, more ...string) []string {
	return append([]string{"Authorization", "Bearer " + token}, more...)
}

// addUserWith creates a user like addUser and then lets fn change fields
// NewUser does not cover (expiry, limits, camera groups...).
func (e *env) addUserWith(login string, apis []auth.API, fn func(u *auth.User), perms ...string) *auth.User {
	e.t.Helper()
	u := e.addUser(login, apis, perms...)
	return e.updateUser(u.ID, fn)
}

// updateUser changes a stored user without ending its sessions.
func (e *env) updateUser(id int64, fn func(u *auth.User)) *auth.User {
	e.t.Helper()
	u, err := e.DB.UpdateUser(e.t.Context(), id, func(u *auth.User) ([]auth.API, error) {
		fn(u)
		return nil, nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return u
}

// adminLogin logs in through the admin API and returns the token.
func (e *env) adminLogin(login string) (string, map[string]any) {
	e.t.Helper()
	r := e.do("POST", "/api/admin/v1/auth/token", map[string]any{"login": login, "password": "password1"})
	wantStatus(e.t, r, http.StatusOK)
	body := r.JSON(e.t)
	return body["access_token"].(string), body
}

// integrationLogin logs in through the integration API and returns the
// token pair.
func (e *env) integrationLogin(login string) (token, refresh string) {
	e.t.Helper()
	r := e.do("POST", "/v1/login_check", map[string]any{"username": login, "password": "password1"})
	wantStatus(e.t, r, http.StatusOK)
	body := r.JSON(e.t)
	return body["token"].(string), body["refresh_token"].(string)
}

// clientSessions returns the user's stored client sessions.
func (e *env) clientSessions(userID int64) []*auth.Session {
	e.t.Helper()
	all, err := e.DB.UserSessions(e.t.Context(), userID)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []*auth.Session
	for _, s := range all {
		if s.API == auth.APIClient {
			out = append(out, s)
		}
	}
	return out
}

// wantJSON fails the test unless r has the status and its body is the same
// JSON value as want (key order and spacing aside).
func wantJSON(t *testing.T, r response, status int, want string) {
	t.Helper()
	wantStatus(t, r, status)
	var got, exp any
	if err := json.Unmarshal(r.Body, &got); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, r.Body)
	}
	if err := json.Unmarshal([]byte(want), &exp); err != nil {
		t.Fatalf("bad want JSON in test: %v", err)
	}
	if !reflect.DeepEqual(got, exp) {
		t.Fatalf("body =\n%s\nwant\n%s", r.Body, want)
	}
}

// wantInvalid fails the test unless r is Laravel's 422 with exactly errs.
func wantInvalid(t *testing.T, r response, errs map[string][]string) {
	t.Helper()
	want, err := json.Marshal(map[string]any{"message": "The given data was invalid.", "errors": errs})
	if err != nil {
		t.Fatal(err)
	}
	wantJSON(t, r, http.StatusUnprocessableEntity, string(want))
}

// wantMessage fails the test unless r is exactly {"message": msg} with the
// status.
func wantMessage(t *testing.T, r response, status int, msg string) {
	t.Helper()
	want, err := json.Marshal(map[string]string{"message": msg})
	if err != nil {
		t.Fatal(err)
	}
	wantJSON(t, r, status, string(want))
}

// wantIntegrationError fails the test unless r is seed 002's envelope with
// exactly one error.
func wantIntegrationError(t *testing.T, r response, status, code int, msg string) {
	t.Helper()
	want, err := json.Marshal(map[string]any{"errors": []any{map[string]any{"error": code, "message": msg}}})
	if err != nil {
		t.Fatal(err)
	}
	wantJSON(t, r, status, string(want))
}

// wantKeys fails the test unless obj has exactly the keys.
func wantKeys(t *testing.T, what string, obj any, keys ...string) {
	t.Helper()
	m, ok := obj.(map[string]any)
	if !ok {
		t.Fatalf("%s = %#v, want a JSON object", what, obj)
	}
	got := slices.Sorted(maps.Keys(m))
	want := slices.Sorted(slices.Values(keys))
	if !slices.Equal(got, want) {
		t.Fatalf("%s has keys %q, want %q", what, got, want)
	}
}

// list returns v as a JSON array, failing the test otherwise.
func list(t *testing.T, what string, v any) []any {
	t.Helper()
	l, ok := v.([]any)
	if !ok {
		t.Fatalf("%s = %#v, want a JSON array", what, v)
	}
	return l
}

// object returns v as a JSON object, failing the test otherwise.
func object(t *testing.T, what string, v any) map[string]any {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s = %#v, want a JSON object", what, v)
	}
	return m
}

// stamp is a time as the client and admin APIs format it.
func stamp(t time.Time) string { return t.Local().Format(time.DateTime) }

// Options for newEnv.
func withLicenses(l ...auth.License) envOption {
	return func(c *auth.Config, _ *web.Options) { c.Licenses = l }
}

func withTrustedProxies(p ...string) envOption {
	return func(_ *auth.Config, o *web.Options) { o.TrustedProxies = p }
}

func withLog(w io.Writer) envOption {
	return func(c *auth.Config, o *web.Options) {
		o.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
		c.Logger = o.Logger
	}
}

// API sets for addUser.
var (
	clientAPI      = []auth.API{auth.APIClient}
	adminAPI       = []auth.API{auth.APIAdmin}
	integrationAPI = []auth.API{auth.APIIntegration}
	allAPIs        = auth.AllAPIs
)

// mustJSON encodes v.
func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mustDecode decodes any JSON value.
func mustDecode(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, b)
	}
	return v
}
