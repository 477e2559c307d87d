package web_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"vmsauth/auth"
)

// Seed 002: the integration API, POST /v1/login_check, and its tokens.

// Seed 002's error codes and messages, and the seed product's token codes.
const (
	codeJSON           = 110
	codeContentType    = 111
	codeAuthData       = 1005
	codeBadCredentials = 1006
	codeTokenInvalid   = 1007
	codeTokenMissing   = 1008
	codeTokenExpired   = 1009
)

var integrationMessages = map[int]string{
	codeJSON:           "JSON is not valid.",
	codeContentType:    "Invalid data format (Content-type).",
	codeAuthData:       "Invalid authorization data.",
	codeBadCredentials: "Bad credentials.",
	codeTokenInvalid:   "Your token is invalid.",
	codeTokenMissing:   "Missing token.",
	codeTokenExpired:   "Your token is expired.",
}

// wantCode fails the test unless r is seed 002's envelope with the code,
// its message and the status seed 002 gives it.
func wantCode(t *testing.T, r response, code int) {
	t.Helper()
	status := http.StatusUnauthorized
	if code < 1006 {
		status = http.StatusBadRequest
	}
	wantIntegrationError(t, r, status, code, integrationMessages[code])
}

// checkTokenPair checks a 200 {"token","refresh_token","date"} answer and
// returns the pair. The creation time is both in the body (seed 002's
// field list) and in the Date header.
func checkTokenPair(t *testing.T, e *env, r response) (token, refresh string) {
	t.Helper()
	wantStatus(t, r, http.StatusOK)
	body := r.JSON(t)
	wantKeys(t, "body", body, "token", "refresh_token", "date")
	token, _ = body["token"].(string)
	refresh, _ = body["refresh_token"].(string)
	if token == "" || refresh == "" || token == refresh {
		t.Fatalf("token pair = %q, %q", token, refresh)
	}
	if got, want := r.Header.Get("Date"), e.Clock.Now().UTC().Format(http.TimeFormat); got != want {
		t.Errorf("Date = %q, want the creation time %q", got, want)
	}
	if got, want := body["date"], e.Clock.Now().Local().Format(time.RFC3339); got != want {
		t.Errorf("date = %v, want the creation time %q (RFC 3339, the box's offset)", got, want)
	}
	return token, refresh
}

func TestIntegrationLogin(t *testing.T) {
	const good = `{"username":"alice","password":"password1"}`
	tests := []struct {
		name        string
		contentType string // "" sends none
		body        string
		code        int // 0 for success
	}{
		{"OK", "application/json", good, 0},
		{"OKCharset", "application/json; charset=utf-8", good, 0},
		{"OKContentTypeCase", "Application/JSON", good, 0},
		{"OKUnknownFieldsIgnored", "application/json", `{"username":"alice","password":"password1","extra":[1]}`, 0},
		{"OKLoginCaseInsensitive", "application/json", `{"username":"ALICE","password":"password1"}`, 0},

		// 111 comes first, whatever the body.
		{"ErrContentTypeTextPlain", "text/plain", `{"username":`, codeContentType},
		{"ErrContentTypeMissing", "", `{"username":`, codeContentType},
		{"ErrContentTypeMissingValidBody", "", good, codeContentType},
		{"ErrContentTypeForm", "application/x-www-form-urlencoded", "username=alice&password=password1", codeContentType},
		{"ErrContentTypeMalformed", "application/json; charset", good, codeContentType},
		{"ErrContentTypeBeforeAuthData", "text/plain", `{}`, codeContentType},

		// Then 110.
		{"ErrInvalidJSON", "application/json", `{"username":`, codeJSON},
		{"ErrTrailingGarbage", "application/json", good + ` x`, codeJSON},
		{"ErrTwoObjects", "application/json", good + good, codeJSON},
		{"ErrJSONArray", "application/json", `[` + good + `]`, codeJSON},
		{"ErrJSONString", "application/json", `"alice"`, codeJSON},
		{"ErrJSONNull", "application/json", `null`, codeJSON},
		{"ErrEmptyBody", "application/json", ``, codeJSON},
		{"ErrJSONBeforeCredentials", "application/json", `{"username":"alice","password":"wrong"`, codeJSON},

		// Then 1005.
		{"ErrUsernameMissing", "application/json", `{"password":"password1"}`, codeAuthData},
		{"ErrPasswordMissing", "application/json", `{"username":"alice"}`, codeAuthData},
		{"ErrBothMissing", "application/json", `{}`, codeAuthData},
		{"ErrUsernameEmpty", "application/json", `{"username":"","password":"password1"}`, codeAuthData},
		{"ErrPasswordEmpty", "application/json", `{"username":"alice","password":""}`, codeAuthData},
		{"ErrPasswordNumber", "application/json", `{"username":"alice","password":12345678}`, codeAuthData},
		{"ErrUsernameObject", "application/json", `{"username":{"a":1},"password":"password1"}`, codeAuthData},
		{"ErrUsernameNull", "application/json", `{"username":null,"password":"password1"}`, codeAuthData},
		{"ErrSeedFieldNamesOnly", "application/json", `{"login":"alice","password":"password1"}`, codeAuthData},

		// Then 1006.
		{"ErrWrongPassword", "application/json", `{"username":"alice","password":"password2"}`, codeBadCredentials},
		{"ErrUnknownUser", "application/json", `{"username":"mallory","password":"password1"}`, codeBadCredentials},
		{"ErrNoIntegrationAccess", "application/json", `{"username":"viewer","password":"password1"}`, codeBadCredentials},
		{"ErrDisabled", "application/json", `{"username":"off","password":"password1"}`, codeBadCredentials},
		{"ErrExpired", "application/json", `{"username":"old","password":"password1"}`, codeBadCredentials},
	}
	e := newEnv(t)
	e.addUser("alice", integrationAPI)
	e.addUser("viewer", []auth.API{auth.APIClient, auth.APIAdmin})
	e.addUserWith("off", integrationAPI, func(u *auth.User) { u.Disabled = true })
	e.addUserWith("old", integrationAPI, func(u *auth.User) {
		past := e.Clock.Now().Add(-time.Hour)
		u.ExpiredAt = &past
	})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := e.withT(t)
			var headers []string
			if tc.contentType != "" {
				headers = []string{"Content-Type", tc.contentType}
			}
			r := e.raw("POST", "/v1/login_check", tc.body, headers...)
			if tc.code != 0 {
				wantCode(t, r, tc.code)
				return
			}
			tok, _ := checkTokenPair(t, e, r)
			wantStatus(t, e.do("GET", "/v1/me", nil, authz(tok)...), http.StatusOK)
		})
	}
}

func TestIntegrationRouting(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name, method, path string
		body               any
		headers            []string
		status             int
		message            string
	}{
		{"NotFound", "GET", "/v1/unknown", nil, nil, http.StatusNotFound, "Not found."},
		{"NotFoundPost", "POST", "/v1/unknown", map[string]any{}, nil, http.StatusNotFound, "Not found."},
		{"NotFoundAcceptHTML", "GET", "/v1/unknown", nil, []string{"Accept", "text/html"}, http.StatusNotFound, "Not found."},
		{"MethodNotAllowed", "GET", "/v1/login_check", nil, nil, http.StatusMethodNotAllowed, "Method not allowed."},
		{"MethodNotAllowedRefresh", "GET", "/v1/token/refresh", nil, nil, http.StatusMethodNotAllowed, "Method not allowed."},
		{"BodyTooLarge", "POST", "/v1/login_check", `{"username":"` + strings.Repeat("a", 1<<20) + `"}`, nil,
			http.StatusRequestEntityTooLarge, "Request body is too large."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.withT(t).do(tc.method, tc.path, tc.body, tc.headers...)
			// The status doubles as the code where seed 002 has none.
			wantIntegrationError(t, r, tc.status, tc.status, tc.message)
		})
	}
}

func TestIntegrationTokens(t *testing.T) {
	e := newEnv(t)
	alice := e.addUser("alice", integrationAPI)
	me := func(headers ...string) response { return e.do("GET", "/v1/me", nil, headers...) }

	first, _ := e.integrationLogin("alice")
	r := me(authz(first)...)
	wantJSON(t, r, http.StatusOK, string(mustJSON(t, map[string]any{
		"id": alice.ID, "username": "alice", "expires_at": stamp(e.Clock.Now().Add(24 * time.Hour)),
	})))

	e.Clock.Advance(time.Hour)
	second, _ := e.integrationLogin("alice")
	wantStatus(t, me(authz(first)...), http.StatusOK) // a new token leaves earlier ones valid
	wantStatus(t, me(authz(second)...), http.StatusOK)

	t.Run("ErrMissing", func(t *testing.T) { wantCode(t, me(), codeTokenMissing) })
	t.Run("ErrGarbage", func(t *testing.T) { wantCode(t, me(authz("garbage")...), codeTokenInvalid) })
	t.Run("ErrRefreshTokenAsBearer", func(t *testing.T) {
		_, rt := e.withT(t).integrationLogin("alice")
		wantCode(t, me(authz(rt)...), codeTokenInvalid)
	})
	t.Run("ErrExpired", func(t *testing.T) {
		e.Clock.Advance(23*time.Hour - time.Second) // first is 24 h old less a second
		wantStatus(t, me(authz(first)...), http.StatusOK)
		e.Clock.Advance(time.Second)
		wantCode(t, me(authz(first)...), codeTokenExpired)
		wantStatus(t, me(authz(second)...), http.StatusOK)
		e.Clock.Advance(time.Hour)
		wantCode(t, me(authz(second)...), codeTokenExpired)
	})
	t.Run("ErrEndedWithAccount", func(t *testing.T) {
		tok, _ := e.integrationLogin("alice")
		if _, err := e.Svc.SetDisabled(t.Context(), auth.Root, alice.ID, true); err != nil {
			t.Fatal(err)
		}
		wantCode(t, me(authz(tok)...), codeTokenInvalid)
	})
}

func TestIntegrationRefresh(t *testing.T) {
	refresh := func(e *env, rt string) response {
		e.t.Helper()
		return e.do("POST", "/v1/token/refresh", map[string]any{"refresh_token": rt})
	}
	me := func(e *env, tok string) response {
		e.t.Helper()
		return e.do("GET", "/v1/me", nil, authz(tok)...)
	}

	t.Run("OKAndReuseEndsChain", func(t *testing.T) {
		e := newEnv(t)
		e.addUser("alice", integrationAPI)
		tok1, rt1 := e.integrationLogin("alice")
		otherTok, otherRT := e.integrationLogin("alice") // a separate chain

		e.Clock.Advance(time.Hour)
		tok2, rt2 := checkTokenPair(t, e, refresh(e, rt1))
		if tok2 == tok1 || rt2 == rt1 {
			t.Fatal("refresh returned the old pair")
		}
		wantStatus(t, me(e, tok2), http.StatusOK)
		wantStatus(t, me(e, tok1), http.StatusOK) // valid until it expires

		// rt1 again: refused, and its whole chain ends.
		wantCode(t, refresh(e, rt1), codeTokenInvalid)
		for name, tok := range map[string]string{"original": tok1, "refreshed": tok2} {
			if r := me(e, tok); r.Status != http.StatusUnauthorized {
				t.Errorf("%s token of the chain: status %d after a reused refresh token, want 401", name, r.Status)
			} else {
				wantCode(t, r, codeTokenInvalid)
			}
		}
		wantCode(t, refresh(e, rt2), codeTokenInvalid)
		wantCode(t, refresh(e, rt1), codeTokenInvalid)
		// The other chain is untouched.
		wantStatus(t, me(e, otherTok), http.StatusOK)
		checkTokenPair(t, e, refresh(e, otherRT))
	})

	t.Run("OKNewTokenLives24Hours", func(t *testing.T) {
		e := newEnv(t)
		e.addUser("alice", integrationAPI)
		_, rt := e.integrationLogin("alice")
		e.Clock.Advance(23 * time.Hour)
		tok, _ := checkTokenPair(t, e, refresh(e, rt))
		e.Clock.Advance(24*time.Hour - time.Second)
		wantStatus(t, me(e, tok), http.StatusOK)
		e.Clock.Advance(time.Second)
		wantCode(t, me(e, tok), codeTokenExpired)
	})

	t.Run("OKAfterAccessTokenExpired", func(t *testing.T) {
		e := newEnv(t)
		e.addUser("alice", integrationAPI)
		tok, rt := e.integrationLogin("alice")
		e.Clock.Advance(30*24*time.Hour - time.Second)
		wantCode(t, me(e, tok), codeTokenExpired)
		tok2, _ := checkTokenPair(t, e, refresh(e, rt))
		wantStatus(t, me(e, tok2), http.StatusOK)
	})

	t.Run("ErrExpired", func(t *testing.T) {
		e := newEnv(t)
		e.addUser("alice", integrationAPI)
		_, rt := e.integrationLogin("alice")
		e.Clock.Advance(30 * 24 * time.Hour)
		wantCode(t, refresh(e, rt), codeTokenExpired)
	})

	t.Run("ErrAccountDisabled", func(t *testing.T) {
		e := newEnv(t)
		alice := e.addUser("alice", integrationAPI)
		_, rt := e.integrationLogin("alice")
		if _, err := e.Svc.SetDisabled(t.Context(), auth.Root, alice.ID, true); err != nil {
			t.Fatal(err)
		}
		wantCode(t, refresh(e, rt), codeTokenInvalid)
	})

	e := newEnv(t)
	e.addUser("alice", integrationAPI)
	tok, rt := e.integrationLogin("alice")
	tests := []struct {
		name        string
		contentType string
		body        string
		code        int
	}{
		{"ErrRefreshTokenMissing", "application/json", `{}`, codeAuthData},
		{"ErrRefreshTokenEmpty", "application/json", `{"refresh_token":""}`, codeAuthData},
		{"ErrRefreshTokenNumber", "application/json", `{"refresh_token":1}`, codeAuthData},
		{"ErrContentType", "text/plain", `{"refresh_token":"` + rt + `"}`, codeContentType},
		{"ErrContentTypeMissing", "", `{"refresh_token":"` + rt + `"}`, codeContentType},
		{"ErrInvalidJSON", "application/json", `{"refresh_token":`, codeJSON},
		{"ErrGarbage", "application/json", `{"refresh_token":"garbage"}`, codeTokenInvalid},
		{"ErrAccessTokenAsRefresh", "application/json", `{"refresh_token":"` + tok + `"}`, codeTokenInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var headers []string
			if tc.contentType != "" {
				headers = []string{"Content-Type", tc.contentType}
			}
			wantCode(t, e.withT(t).raw("POST", "/v1/token/refresh", tc.body, headers...), tc.code)
		})
	}
	// None of those used up the refresh token.
	checkTokenPair(t, e, refresh(e, rt))
}

// Seed 002's 500, and the other APIs' answer to a fault: the cause stays in
// the log. Closing the database under the running server makes every store
// call fail.
func TestInternalError(t *testing.T) {
	e := newEnv(t)
	e.addUser("alice", allAPIs)
	client, _ := e.clientLogin("alice")
	integration, _ := e.integrationLogin("alice")
	if err := e.DB.Close(); err != nil {
		t.Fatal(err)
	}
	const serverError = `{"message":"Server Error"}`
	const internal = `{"errors":[{"error":500,"message":"Internal Server Error."}]}`
	tests := []struct {
		name, method, path string
		body               any
		headers            []string
		status             int
		want               string
	}{
		{"ClientLogin", "POST", "/api/v1/token", creds("alice", "password1"), nil, http.StatusInternalServerError, serverError},
		{"ClientToken", "GET", "/api/v1/users/self", nil, authz(client), http.StatusInternalServerError, serverError},
		{"AdminLogin", "POST", "/api/admin/v1/auth/token", creds("alice", "password1"), nil, http.StatusInternalServerError, serverError},
		{"IntegrationLogin", "POST", "/v1/login_check", map[string]any{"username": "alice", "password": "password1"}, nil,
			http.StatusInternalServerError, internal},
		{"IntegrationRefresh", "POST", "/v1/token/refresh", map[string]any{"refresh_token": "x"}, nil, http.StatusInternalServerError, internal},
		{"IntegrationToken", "GET", "/v1/me", nil, authz(integration), http.StatusInternalServerError, internal},
		{"Healthz", "GET", "/healthz", nil, nil, http.StatusServiceUnavailable, `{"status":"unavailable","reason":"database unavailable"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantJSON(t, e.withT(t).do(tc.method, tc.path, tc.body, tc.headers...), tc.status, tc.want)
		})
	}
}
