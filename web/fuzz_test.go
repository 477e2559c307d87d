package web_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"vmsauth/auth"
	"vmsauth/captcha"
	"vmsauth/store/storetest"
	"vmsauth/web"
)

// The fuzz targets post what the fuzzer makes through the real handler on
// a real bbolt file and check what every answer of the three login APIs
// and the token parser must be: no panic, never a 5xx, and JSON in the
// API's own envelope. "go test" runs their seeds as ordinary tests; CI
// fuzzes each briefly with -fuzz.

// The fuzz server's users. fuzzLogin has every API, so the seeds' bodies
// can get all the way to a 200.
const (
	fuzzLogin    = "mylogin@mail.com"
	fuzzPassword = "mypassword"
)

// fuzzServer is the whole handler over a real database, with everything
// the login paths can touch (throttle, audit trail, captchas) switched on.
type fuzzServer struct {
	h   http.Handler
	svc *auth.Service
	db  storetest.Backend
}

// lockedReader makes a deterministic random source safe to share.
type lockedReader struct {
	mu sync.Mutex
	r  io.Reader
}

func (l *lockedReader) Read(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Read(p)
}

// newFuzzServer starts a server on a fresh database. Its tokens and ids
// come from a fixed seed, so every fuzz worker process, running the same
// setup, issues the same tokens: seeds may carry them. Its clock stands
// still, so those tokens stay live and reading them writes nothing.
func newFuzzServer(tb testing.TB, requireCaptcha bool) *fuzzServer {
	tb.Helper()
	db := storetest.OpenForTest(tb)
	now := func() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) }
	svc, err := auth.New(db, auth.Config{
		BcryptCost: bcrypt.MinCost, Now: now,
		Rand: &lockedReader{r: rand.NewChaCha8([32]byte{'v', 'm', 's', 'a', 'u', 't', 'h'})},
	})
	if err != nil {
		tb.Fatal(err)
	}
	audit := auth.NewAuditor(db, 1000, 0, now, func(error) {})
	tb.Cleanup(func() { audit.Close() })
	h, err := web.New(svc, web.Options{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		// Limits no fuzz run reaches in a window this short, so the throttle
		// runs on every fuzzed login without turning them all into 429s. The
		// login limit stays small: each counter preallocates room for the
		// whole limit, and the fuzzer names thousands of logins.
		Throttle:       auth.NewThrottle(auth.ThrottleConfig{IPLimit: 1000, LoginLimit: 50, Window: time.Millisecond}),
		Audit:          audit,
		Captchas:       testCaptchas(tb, captcha.Config{}),
		RequireCaptcha: requireCaptcha,
	})
	if err != nil {
		tb.Fatal(err)
	}
	s := &fuzzServer{h: h, svc: svc, db: db}
	s.addUser(tb, fuzzLogin, fuzzPassword, auth.AllAPIs, nil)
	// The rest reach the other answers of a right password: no access to
	// the API (403 on admin, 422 on client), expired, disabled.
	s.addUser(tb, "user", "12345678", []auth.API{auth.APIClient, auth.APIIntegration}, nil)
	s.addUser(tb, "admin-only", "12345678", []auth.API{auth.APIAdmin}, nil)
	s.addUser(tb, "expired", "12345678", auth.AllAPIs, func(u *auth.User) {
		t := now().Add(-time.Hour)
		u.ExpiredAt = &t
	})
	s.addUser(tb, "disabled", "12345678", auth.AllAPIs, func(u *auth.User) { u.Disabled = true })
	return s
}

// addUser creates a user with every permission; fn, if given, then
// changes what NewUser cannot set (expiry, disabled).
func (s *fuzzServer) addUser(tb testing.TB, login, password string, apis []auth.API, fn func(*auth.User)) {
	tb.Helper()
	u, err := s.svc.CreateUser(tb.Context(), auth.Root, auth.NewUser{
		Login: login, Password: password, APIs: apis, Permissions: auth.AllPermissionNames(),
	})
	if err != nil {
		tb.Fatal(err)
	}
	if fn == nil {
		return
	}
	if _, err := s.db.UpdateUser(tb.Context(), u.ID, func(u *auth.User) ([]auth.API, error) { fn(u); return nil, nil }); err != nil {
		tb.Fatal(err)
	}
}

// fuzzRequest serves one request through h. Header values are set as
// given, unchecked, as a proxy in front of the box might pass them on.
func fuzzRequest(h http.Handler, method, path, body string, headers ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header[http.CanonicalHeaderKey(headers[i])] = []string{headers[i+1]}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// login answers one JSON login and returns its decoded body.
func (s *fuzzServer) login(tb testing.TB, path, body string) map[string]any {
	tb.Helper()
	rec := fuzzRequest(s.h, "POST", path, body, "Content-Type", "application/json")
	if rec.Code != http.StatusOK {
		tb.Fatalf("setup login on %s: %d %s", path, rec.Code, rec.Body)
	}
	var v map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		tb.Fatal(err)
	}
	return v
}

// The seeds' own example bodies, and a few near them.
var (
	seedClientBodies = []string{
		// seed 000, as printed
		`{
"login": "mylogin@mail.com",
"password": "mypassword",
"session_id": "null|session_id",
"captcha": "9U6yh",
"key": "$2y$10$3gXEas4WVUryBA8GgF37vulJz1UrAo2VaYbWccaxeNYoZ.3UJqHYu"
}`,
		`{"login":"mylogin@mail.com","password":"mypassword","session_id":"null","captcha":"9U6yh","key":"$2y$10$3gXEas4WVUryBA8GgF37vulJz1UrAo2VaYbWccaxeNYoZ.3UJqHYu"}`,
		`{"login":"mylogin@mail.com","password":"mypassword"}`,
		`{"login":"mylogin@mail.com","password":"mypassword","session_id":null,"rememberMe":false}`,
		`{"login":"MYLOGIN@mail.com","password":"mypassword","session_id":""}`,
		`{"login":"mylogin@mail.com","password":"wrong-password"}`,
		`{"login":"user","password":"12345678"}`,
		`{"login":"admin-only","password":"12345678"}`,
		`{"login":"expired","password":"12345678"}`,
		`{"login":"disabled","password":"12345678"}`,
		`{"login":"mylogin@mail.com","password":"mypassword","session_id":"not-a-session"}`,
		`{"login":"mylogin@mail.com","password":"mypassword","session_id":123}`,
		`{"login":123,"password":["x"],"captcha":{},"key":true}`,
		`{"login":"","password":""}`,
		`{}`, `[]`, `null`, `"login"`, ``, `{"login":"mylogin@mail.com",`,
	}
	seedAdminBodies = []string{
		// seed 001's cURL and PHP examples, and its user
		`{
    "login": "string",
    "password": "string"
}`,
		`{"login":"user@mail.com","password":"password"}`,
		`{"login":"mylogin@mail.com","password":"mypassword"}`,
		`{"login":"user","password":"12345678"}`,
		`{"login":"admin-only","password":"12345678"}`,
		`{"login":"expired","password":"12345678"}`,
		`{"login":"disabled","password":"12345678"}`,
		`{"login":"mylogin@mail.com","password":"mypassword","login":"x"}`,
		`{"login":null,"password":1.5e400}`,
		`{}`, `[]`, ``, `{"login":"string"`,
	}
	seedIntegrationBodies = []string{
		// seed 002's example, as printed
		`{
  "username": "user",
  "password": "1234"
}`,
		`{"username":"user","password":"12345678"}`,
		`{"username":"mylogin@mail.com","password":"mypassword"}`,
		`{"username":"admin-only","password":"12345678"}`,
		`{"username":"expired","password":"12345678"}`,
		`{"username":"disabled","password":"12345678"}`,
		`{"username":"","password":""}`,
		`{"username":1234,"password":{"a":1}}`,
		`{"username":"user","password":"1234"} trailing`,
		`{}`, `[]`, ``, `{"username":`,
	}
	seedContentTypes = []string{
		"application/json", "application/json; charset=utf-8", "Application/JSON",
		"text/plain", "", "application/json;", "multipart/form-data; boundary=x",
	}
)

func FuzzClientLogin(f *testing.F) {
	plain := newFuzzServer(f, false)
	withCaptcha := newFuzzServer(f, true)
	// Fill the plain server's session limit for fuzzLogin, so fuzzed logins
	// meet 419, and seed bodies that replace those sessions.
	for range 5 {
		body := plain.login(f, "/api/v1/token", `{"login":"`+fuzzLogin+`","password":"`+fuzzPassword+`"}`)
		id := body["user"].(map[string]any)["access_token_id"].(string)
		f.Add(`{"login":"` + fuzzLogin + `","password":"` + fuzzPassword + `","session_id":"` + id + `"}`)
	}
	for _, b := range seedClientBodies {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body string) {
		for _, s := range []*fuzzServer{plain, withCaptcha} {
			rec := fuzzRequest(s.h, "POST", "/api/v1/token", body, "Content-Type", "application/json")
			checkLaravelEnvelope(t, rec, "client login", "user", "access_token")
		}
	})
}

func FuzzAdminLogin(f *testing.F) {
	s := newFuzzServer(f, false)
	for _, b := range seedAdminBodies {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body string) {
		rec := fuzzRequest(s.h, "POST", "/api/admin/v1/auth/token", body, "Content-Type", "application/json")
		checkLaravelEnvelope(t, rec, "admin login", "user", "expires_at", "token_type", "access_token")
	})
}

func FuzzIntegrationLogin(f *testing.F) {
	s := newFuzzServer(f, false)
	for _, b := range seedIntegrationBodies {
		for _, ct := range seedContentTypes {
			f.Add(b, ct)
		}
	}
	f.Fuzz(func(t *testing.T, body, contentType string) {
		rec := fuzzRequest(s.h, "POST", "/v1/login_check", body, "Content-Type", contentType)
		checkIntegrationEnvelope(t, rec, "integration login", "token", "refresh_token", "date")
	})
}

func FuzzBearer(f *testing.F) {
	s := newFuzzServer(f, false)
	client := s.login(f, "/api/v1/token", `{"login":"`+fuzzLogin+`","password":"`+fuzzPassword+`"}`)["access_token"].(string)
	admin := s.login(f, "/api/admin/v1/auth/token", `{"login":"`+fuzzLogin+`","password":"`+fuzzPassword+`"}`)["access_token"].(string)
	integration := s.login(f, "/v1/login_check", `{"username":"`+fuzzLogin+`","password":"`+fuzzPassword+`"}`)["token"].(string)
	for _, tok := range []string{client, admin, integration} {
		for _, h := range []string{
			"Bearer " + tok, "bearer " + tok, "BEARER  " + tok + " ", "Bearer " + tok[:len(tok)-1],
			"Bearer " + tok + tok, "Bearer\t" + tok, "Token " + tok, tok,
		} {
			f.Add(h)
		}
	}
	for _, h := range []string{
		"", "Bearer", "Bearer ", "Bearer  ", "Bearer token", "Bearer null", "Basic dXNlcjoxMjM0",
		"Bearer \x00", "Bearer \xff\xfe", "Bearer " + strings.Repeat("a", 4096), "bearer\n x",
	} {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, header string) {
		for _, path := range []string{"/auth/verify", "/api/v1/users/self", "/api/admin/v1/auth/user"} {
			rec := fuzzRequest(s.h, "GET", path, "", "Authorization", header)
			if rec.Code != http.StatusOK && rec.Code != http.StatusUnauthorized {
				t.Fatalf("GET %s with Authorization %q: %d, want 200 or 401; body %s", path, header, rec.Code, rec.Body)
			}
			checkLaravelEnvelope(t, rec, "GET "+path)
		}
		rec := fuzzRequest(s.h, "GET", "/v1/me", "", "Authorization", header)
		if rec.Code != http.StatusOK && rec.Code != http.StatusUnauthorized {
			t.Fatalf("GET /v1/me with Authorization %q: %d, want 200 or 401; body %s", header, rec.Code, rec.Body)
		}
		checkIntegrationEnvelope(t, rec, "GET /v1/me", "id", "username", "expires_at")
	})
}

// checkLaravelEnvelope fails t unless rec is an answer of the client or
// admin API: below 500, JSON, and for an error Laravel's shape. A 200
// must carry the success keys given.
func checkLaravelEnvelope(t *testing.T, rec *httptest.ResponseRecorder, what string, successKeys ...string) {
	t.Helper()
	if err := laravelEnvelopeError(rec.Code, rec.Header(), rec.Body.Bytes(), successKeys...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// checkIntegrationEnvelope is checkLaravelEnvelope for seed 002's envelope.
func checkIntegrationEnvelope(t *testing.T, rec *httptest.ResponseRecorder, what string, successKeys ...string) {
	t.Helper()
	if err := integrationEnvelopeError(rec.Code, rec.Header(), rec.Body.Bytes(), successKeys...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// decodeAnswer checks what every JSON answer shares: a status below 500
// and a JSON object body labelled as JSON.
func decodeAnswer(status int, h http.Header, body []byte) (map[string]any, error) {
	if status >= 500 {
		return nil, fmt.Errorf("status %d; body %s", status, body)
	}
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return nil, fmt.Errorf("status %d: Content-Type %q, want JSON; body %s", status, ct, body)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil || m == nil {
		return nil, fmt.Errorf("status %d: body is not a JSON object (%v): %s", status, err, body)
	}
	return m, nil
}

// laravelEnvelopeError says how an answer of the client or admin API is
// out of its envelope, or returns nil.
func laravelEnvelopeError(status int, h http.Header, body []byte, successKeys ...string) error {
	m, err := decodeAnswer(status, h, body)
	if err != nil {
		return err
	}
	switch {
	case status < 300:
		for _, k := range successKeys {
			if _, ok := m[k]; !ok {
				return fmt.Errorf("status %d without %q: %s", status, k, body)
			}
		}
		return nil
	case status == 419:
		for _, k := range []string{"sessions", "sessions_limit", "sessions_count"} {
			if _, ok := m[k]; !ok {
				return fmt.Errorf("419 without %q: %s", k, body)
			}
		}
		return nil
	}
	if msg, ok := m["message"].(string); !ok || msg == "" {
		return fmt.Errorf("status %d without a message: %s", status, body)
	}
	for k := range m {
		if k != "message" && k != "errors" {
			return fmt.Errorf("status %d with unexpected key %q: %s", status, k, body)
		}
	}
	errs, hasErrs := m["errors"]
	if status != http.StatusUnprocessableEntity {
		if hasErrs {
			return fmt.Errorf("status %d with errors: %s", status, body)
		}
		return nil
	}
	fields, ok := errs.(map[string]any)
	if !ok || len(fields) == 0 {
		return fmt.Errorf("422 without field errors: %s", body)
	}
	for field, v := range fields {
		list, ok := v.([]any)
		if !ok || len(list) == 0 {
			return fmt.Errorf("422: errors.%s is not a list of messages: %s", field, body)
		}
		for _, s := range list {
			if s, ok := s.(string); !ok || s == "" {
				return fmt.Errorf("422: errors.%s holds a non-message: %s", field, body)
			}
		}
	}
	return nil
}

// integrationEnvelopeError says how an answer of the integration API is
// out of seed 002's envelope, or returns nil.
func integrationEnvelopeError(status int, h http.Header, body []byte, successKeys ...string) error {
	m, err := decodeAnswer(status, h, body)
	if err != nil {
		return err
	}
	if status < 300 {
		for _, k := range successKeys {
			if _, ok := m[k]; !ok {
				return fmt.Errorf("status %d without %q: %s", status, k, body)
			}
		}
		return nil
	}
	errs, ok := m["errors"].([]any)
	if !ok || len(m) != 1 || len(errs) != 1 {
		return fmt.Errorf("status %d: want exactly {\"errors\":[one error]}: %s", status, body)
	}
	e, ok := errs[0].(map[string]any)
	if !ok || len(e) != 2 {
		return fmt.Errorf("status %d: want {\"error\":N,\"message\":...}: %s", status, body)
	}
	code, ok := e["error"].(float64)
	if !ok || code <= 0 || code != float64(int(code)) {
		return fmt.Errorf("status %d: error code is not a positive integer: %s", status, body)
	}
	if msg, ok := e["message"].(string); !ok || msg == "" {
		return fmt.Errorf("status %d: error without a message: %s", status, body)
	}
	return nil
}
