package web_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"vmsauth/auth"
	"vmsauth/store/storetest"
	"vmsauth/web"
)

// badServer is vmsauth as serve builds it: the handler with its throttle
// and audit trail, inside the http.Server of web.NewServer (timeouts,
// header limit) on a real listener, so the server's own limits apply too.
func badServer(t *testing.T) (url string, svc *auth.Service) {
	t.Helper()
	db := storetest.OpenForTest(t)
	svc, err := auth.New(db, auth.Config{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	audit := auth.NewAuditor(db, 0, 0, nil, func(err error) { t.Errorf("audit trail: %v", err) })
	t.Cleanup(func() { audit.Close() })
	h, err := web.New(svc, web.Options{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		// Room for the whole table from one address: what is tested here is
		// the answer to each input, not the throttle.
		Throttle: auth.NewThrottle(auth.ThrottleConfig{IPLimit: 1000, LoginLimit: 100}),
		Audit:    audit,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := web.NewServer(ln.Addr().String(), checkContract(t, h))
	srv.ErrorLog = slog.NewLogLogger(slog.New(slog.NewTextHandler(io.Discard, nil)).Handler(), slog.LevelWarn)
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return "http://" + ln.Addr().String(), svc
}

// badTarget is an endpoint the table sends every bad input to.
type badTarget struct {
	name        string
	method      string
	path        string
	wrongMethod string
	// fields names the JSON fields its body holds.
	fields []string
	// plausible is a well-formed body that it refuses all the same (wrong
	// password, unknown token, invalid user).
	plausible   string
	integration bool // answers in seed 002's envelope, else Laravel's
	readsBody   bool // reads (and so caps) its body
	token       bool // sends the admin's bearer token
}

// badInput is one row of the table.
type badInput struct {
	name        string
	body        func(tg badTarget) string
	contentType string // "application/json" unless set; "-" sends none
	chunked     bool   // sent without a Content-Length
	headers     []string
	method      func(tg badTarget) string
	// want returns the one status expected, or 0 for any 4xx but 429.
	want func(tg badTarget) int
}

// eachField builds a JSON object giving every field of tg the raw JSON
// value v.
func eachField(v string) func(badTarget) string {
	return func(tg badTarget) string {
		parts := make([]string, len(tg.fields))
		for i, f := range tg.fields {
			parts[i] = `"` + f + `":` + v
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
}

func fixed(s string) func(badTarget) string { return func(badTarget) string { return s } }

// nested is depth levels of JSON, {"f":{"a":{"a":...1...}}} with depth
// objects, as the value of the target's first field. Go's encoding/json
// accepts 10000 levels and refuses more.
func nested(depth int) func(badTarget) string {
	return func(tg badTarget) string {
		return `{"` + tg.fields[0] + `":` + strings.Repeat(`{"a":`, depth-1) + "1" + strings.Repeat("}", depth)
	}
}

// nestedArrays is nested with arrays: {"f":[[[...]]]}.
func nestedArrays(depth int) func(badTarget) string {
	return func(tg badTarget) string {
		return `{"` + tg.fields[0] + `":` + strings.Repeat("[", depth-1) + strings.Repeat("]", depth-1) + "}"
	}
}

func TestBadInput(t *testing.T) {
	url, svc := badServer(t)
	if _, err := svc.CreateUser(t.Context(), auth.Root, auth.NewUser{
		Login: "tech", Password: "password1", APIs: auth.AllAPIs, Permissions: auth.AllPermissionNames(),
	}); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{}, Timeout: 30 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	// sendBody sends one request; contentType "-" sends none.
	sendBody := func(t *testing.T, method, path, contentType string, body io.Reader, headers ...string) (int, http.Header, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, url+path, body)
		if err != nil {
			t.Fatal(err)
		}
		if contentType != "-" {
			req.Header.Set("Content-Type", contentType)
		}
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatalf("%s %s: reading the answer: %v", method, path, err)
		}
		return res.StatusCode, res.Header, b
	}
	send := func(t *testing.T, method, path, contentType, body string, headers ...string) (int, http.Header, []byte) {
		t.Helper()
		return sendBody(t, method, path, contentType, strings.NewReader(body), headers...)
	}
	postJSON := func(t *testing.T, path, body string, headers ...string) map[string]any {
		t.Helper()
		status, _, b := send(t, "POST", path, "application/json", body, headers...)
		if status != http.StatusOK {
			t.Fatalf("POST %s: %d %s", path, status, b)
		}
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	adminToken := postJSON(t, "/api/admin/v1/auth/token", `{"login":"tech","password":"password1"}`)["access_token"].(string)

	targets := []badTarget{
		{name: "Client", method: "POST", path: "/api/v1/token", wrongMethod: "GET",
			fields:    []string{"login", "password", "session_id", "captcha", "key"},
			plausible: `{"login":"tech","password":"wrong-password"}`, readsBody: true},
		{name: "Admin", method: "POST", path: "/api/admin/v1/auth/token", wrongMethod: "PUT",
			fields:    []string{"login", "password"},
			plausible: `{"login":"tech","password":"wrong-password"}`, readsBody: true},
		{name: "Integration", method: "POST", path: "/v1/login_check", wrongMethod: "GET",
			fields:    []string{"username", "password"},
			plausible: `{"username":"tech","password":"wrong-password"}`, integration: true, readsBody: true},
		{name: "Refresh", method: "POST", path: "/v1/token/refresh", wrongMethod: "DELETE",
			fields:    []string{"refresh_token"},
			plausible: `{"refresh_token":"no-such-refresh-token"}`, integration: true, readsBody: true},
		// A token endpoint that reads a JSON body: the admin page's user
		// creation, with a live admin token.
		{name: "CreateUser", method: "POST", path: "/api/admin/v1/users", wrongMethod: "PUT",
			fields:    []string{"login", "password", "name", "apis", "permissions", "sessions_limit", "expired_at"},
			plausible: `{"login":"has space","password":"short"}`, readsBody: true, token: true},
		// The token check the rest of the box calls, with no live token.
		{name: "Verify", method: "GET", path: "/auth/verify", wrongMethod: "POST",
			fields: []string{"token"}, plausible: `{}`},
	}

	tooLarge := func(tg badTarget) int {
		if tg.readsBody {
			return http.StatusRequestEntityTooLarge
		}
		return 0
	}
	inputs := []badInput{
		{name: "Body10MiB", body: func(tg badTarget) string {
			return `{"` + tg.fields[0] + `":"` + strings.Repeat("a", 10<<20) + `"}`
		}, want: tooLarge},
		{name: "Body10MiBChunked", body: func(tg badTarget) string {
			return `{"` + tg.fields[0] + `":"` + strings.Repeat("a", 10<<20) + `"}`
		}, chunked: true, want: tooLarge},
		{name: "BodyJustOverLimit", body: func(tg badTarget) string {
			return strings.Repeat(" ", web.DefaultBodyLimit-len(tg.plausible)+1) + tg.plausible
		}, want: tooLarge},
		{name: "LongStringsUnderLimit", body: func(tg badTarget) string {
			return eachField(`"` + strings.Repeat("é", 24<<10/len(tg.fields)) + `"`)(tg)
		}},
		{name: "TruncatedJSON", body: func(tg badTarget) string {
			b := eachField(`"value"`)(tg)
			return b[:len(b)/2]
		}},
		{name: "TruncatedAfterKey", body: func(tg badTarget) string { return `{"` + tg.fields[0] + `":` }},
		{name: "TrailingGarbage", body: func(tg badTarget) string { return tg.plausible + `garbage` }},
		{name: "TwoObjects", body: func(tg badTarget) string { return tg.plausible + tg.plausible }},
		{name: "InvalidUTF8InStrings", body: eachField("\"\xff\xfe\xc3\x28\xed\xa0\x80x\"")},
		// The plausible body with one byte that is not UTF-8 in its first
		// string: encoding/json would quietly turn it into U+FFFD.
		{name: "InvalidUTF8InPlausible", body: func(tg badTarget) string {
			if i := strings.Index(tg.plausible, `":"`); i >= 0 {
				return tg.plausible[:i+3] + "\xff" + tg.plausible[i+3:]
			}
			return tg.plausible
		}},
		{name: "InvalidUTF8Keys", body: func(tg badTarget) string { return "{\"\xff" + tg.fields[0] + "\":\"x\"}" }},
		{name: "InvalidUTF8Body", body: fixed("\xff\xfe\x00{\x80}")},
		{name: "UTF16Body", body: fixed("\xff\xfe{\x00}\x00")},
		{name: "ObjectsForStrings", body: eachField(`{"a":"b"}`)},
		{name: "ArraysForStrings", body: eachField(`["a"]`)},
		{name: "NumbersForStrings", body: eachField(`12345`)},
		{name: "HugeNumbers", body: eachField(`1e400`)},
		{name: "BoolsForStrings", body: eachField(`true`)},
		{name: "NullFields", body: eachField(`null`)},
		{name: "EmptyStrings", body: eachField(`""`)},
		{name: "NULBytes", body: eachField(`"\u0000a\u0000"`)},
		{name: "LoneSurrogates", body: eachField(`"\ud800\udfff\udc00"`)},
		{name: "Nested10000Objects", body: nested(10000)},
		{name: "Nested10001Objects", body: nested(10001)},
		{name: "Nested10000Arrays", body: nestedArrays(10000)},
		{name: "Nested10001Arrays", body: nestedArrays(10001)},
		{name: "10000OpenBraces", body: fixed(strings.Repeat("{", 10000))},
		{name: "10000NestedArrays", body: fixed(strings.Repeat("[", 10000) + strings.Repeat("]", 10000))},
		{name: "EmptyBody", body: fixed("")},
		{name: "Whitespace", body: fixed(" \r\n\t")},
		{name: "Null", body: fixed("null")},
		{name: "Array", body: fixed(`[]`)},
		{name: "String", body: fixed(`"login"`)},
		{name: "FormBody", body: fixed("login=tech&password=password1"), contentType: "application/x-www-form-urlencoded"},
		{name: "NoContentType", body: func(tg badTarget) string { return tg.plausible }, contentType: "-"},
		{name: "WrongMethod", body: func(tg badTarget) string { return tg.plausible },
			method: func(tg badTarget) string { return tg.wrongMethod },
			want:   func(badTarget) int { return http.StatusMethodNotAllowed }},
		{name: "BigHeadersUnderLimit", body: func(tg badTarget) string { return tg.plausible },
			headers: []string{"User-Agent", strings.Repeat("u", 6<<10), "X-Client", strings.Repeat("c", 4<<10),
				"X-UUID", strings.Repeat("d", 2<<10), "Hl", strings.Repeat("r", 1<<10)}},
		// Go's server refuses these itself, before any handler, with a
		// plain-text 431: outside every API's envelope, and nothing of ours
		// can change that short of a handler-level header check.
		{name: "HugeHeader", body: func(tg badTarget) string { return tg.plausible },
			headers: []string{"X-Padding", strings.Repeat("p", 64<<10)},
			want:    func(badTarget) int { return http.StatusRequestHeaderFieldsTooLarge }},
		{name: "ManyHeaders", body: func(tg badTarget) string { return tg.plausible },
			headers: manyHeaders(2000),
			want:    func(badTarget) int { return http.StatusRequestHeaderFieldsTooLarge }},
	}

	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			for _, in := range inputs {
				t.Run(in.name, func(t *testing.T) {
					method := tg.method
					if in.method != nil {
						method = in.method(tg)
					}
					ct := in.contentType
					if ct == "" {
						ct = "application/json"
					}
					headers := in.headers
					if tg.token {
						headers = append(authz(adminToken), headers...)
					}
					var rd io.Reader = strings.NewReader(in.body(tg))
					if in.chunked {
						// A reader of no known length makes net/http send
						// the body chunked.
						rd = io.MultiReader(rd)
					}
					status, h, body := sendBody(t, method, tg.path, ct, rd, headers...)
					want := 0
					if in.want != nil {
						want = in.want(tg)
					}
					switch {
					case want != 0 && status != want:
						t.Fatalf("status %d, want %d; body %.300s", status, want, body)
					case status < 400 || status >= 500 || status == http.StatusTooManyRequests:
						t.Fatalf("status %d, want a 4xx (and not the throttle's 429); body %.300s", status, body)
					case want == 0 && status == http.StatusRequestEntityTooLarge:
						t.Fatalf("a body of %d bytes, under the limit, answered 413", len(in.body(tg)))
					case status == http.StatusRequestHeaderFieldsTooLarge:
						// net/http's own answer: see the HugeHeader row.
						return
					}
					var err error
					if tg.integration {
						err = integrationEnvelopeError(status, h, body)
					} else {
						err = laravelEnvelopeError(status, h, body)
					}
					if err != nil {
						t.Fatal(err)
					}
				})
			}
		})
	}

	// A body the admin API would accept but for one byte that is not UTF-8.
	// auth refuses such logins (utf8.ValidString in checkLogin), but
	// encoding/json turns the byte into U+FFFD before auth sees it, so
	// the check can only hold if the handler refuses the body.
	t.Run("CreateUserInvalidUTF8Login", func(t *testing.T) {
		status, h, body := send(t, "POST", "/api/admin/v1/users", "application/json",
			"{\"login\":\"new\xffuser\",\"password\":\"password1\"}", authz(adminToken)...)
		if status != http.StatusUnprocessableEntity {
			t.Errorf("status %d, want 422; body %.300s", status, body)
		}
		if err := laravelEnvelopeError(status, h, body); err != nil {
			t.Error(err)
		}
	})

	// The service still serves, and a normal login still works on every API.
	t.Run("StillServing", func(t *testing.T) {
		if status, _, b := send(t, "GET", "/healthz", "-", ""); status != http.StatusOK {
			t.Fatalf("healthz: %d %s", status, b)
		}
		clientToken := postJSON(t, "/api/v1/token", `{"login":"tech","password":"password1"}`)["access_token"].(string)
		postJSON(t, "/api/admin/v1/auth/token", `{"login":"tech","password":"password1"}`)
		pair := postJSON(t, "/v1/login_check", `{"username":"tech","password":"password1"}`)
		postJSON(t, "/v1/token/refresh", `{"refresh_token":"`+pair["refresh_token"].(string)+`"}`)
		if status, _, b := send(t, "GET", "/auth/verify", "-", "", authz(clientToken)...); status != http.StatusOK {
			t.Fatalf("verify: %d %s", status, b)
		}
		if status, _, b := send(t, "GET", "/api/admin/v1/users?search=tech", "-", "", authz(adminToken)...); status != http.StatusOK || !bytes.Contains(b, []byte(`"tech"`)) {
			t.Fatalf("users list: %d %s", status, b)
		}
	})
}

// manyHeaders returns n small headers, about 40 KiB in all.
func manyHeaders(n int) []string {
	h := make([]string, 0, 2*n)
	for i := range n {
		h = append(h, "X-H"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+string(rune('a'+i/26%26))+string(rune('a'+i/676%26)), "0123456789")
	}
	return h
}
