package web_test

import (
	"net/http"
	"testing"
)

// Issue 12, "Small holes": /auth/verify reads its query strictly, and
// every answer that carries a token stays out of caches.

func TestVerifyParams(t *testing.T) {
	e := newEnv(t)
	e.addUser("alice", allAPIs, "users-view")
	e.addUser("bob", clientAPI)
	alice, _ := e.clientLogin("alice")
	bob, _ := e.clientLogin("bob")

	const (
		badPermission = "The permission parameter must name one permission, once."
		badAPI        = "The api parameter must be client, admin or integration."
		badQuery      = "The query string is malformed."
	)
	tests := []struct {
		name, token, query string
		status             int
		message            string // for 400s
	}{
		{"OKOnePermissionHeld", alice, "?permission=users-view", http.StatusOK, ""},
		{"ErrOnePermissionLacking", bob, "?permission=users-view", http.StatusForbidden, ""},
		// Bob lacks users-view: each of these let him through before.
		{"ErrEmptyThenPermission", bob, "?permission=&permission=users-view", http.StatusBadRequest, badPermission},
		{"ErrEmptyPermission", bob, "?permission=", http.StatusBadRequest, badPermission},
		{"ErrBarePermission", bob, "?permission", http.StatusBadRequest, badPermission},
		{"ErrRepeatedPermission", alice, "?permission=users-view&permission=users-view", http.StatusBadRequest, badPermission},
		{"ErrSemicolon", bob, "?permission=users-view;x=y", http.StatusBadRequest, badQuery},
		{"ErrBadEscape", bob, "?permission=users-view%zz", http.StatusBadRequest, badQuery},
		{"ErrEmptyAPI", bob, "?api=", http.StatusBadRequest, badAPI},
		{"ErrRepeatedAPI", bob, "?api=client&api=admin", http.StatusBadRequest, badAPI},
		// Parameters are judged before the token: a misconfigured proxy
		// rule fails for everyone, not only for the users who lack it.
		{"ErrPermissionNoToken", "", "?permission=", http.StatusBadRequest, badPermission},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h []string
			if tc.token != "" {
				h = authz(tc.token)
			}
			r := e.withT(t).do("GET", "/auth/verify"+tc.query, nil, h...)
			if tc.message != "" {
				wantMessage(t, r, tc.status, tc.message)
				return
			}
			wantStatus(t, r, tc.status)
		})
	}
}

// Every answer of an endpoint that hands out tokens says no-store and
// no-cache (RFC 6749 §5.1), whether it succeeded or not.
func TestTokenAnswersNotCached(t *testing.T) {
	e := newEnv(t)
	e.addUser("alice", allAPIs)
	_, refresh := e.integrationLogin("alice")
	tests := []struct {
		name, path string
		body       map[string]any
		status     int
	}{
		{"ClientLogin", "/api/v1/token", map[string]any{"login": "alice", "password": "password1"}, http.StatusOK},
		{"ClientLoginFailed", "/api/v1/token", map[string]any{"login": "alice", "password": "wrong-password"}, http.StatusUnprocessableEntity},
		{"AdminLogin", "/api/admin/v1/auth/token", map[string]any{"login": "alice", "password": "password1"}, http.StatusOK},
		{"IntegrationLogin", "/v1/login_check", map[string]any{"username": "alice", "password": "password1"}, http.StatusOK},
		{"IntegrationRefresh", "/v1/token/refresh", map[string]any{"refresh_token": refresh}, http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.withT(t).do("POST", tc.path, tc.body)
			wantStatus(t, r, tc.status)
			if got := r.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", got)
			}
			if got := r.Header.Get("Pragma"); got != "no-cache" {
				t.Errorf("Pragma = %q, want no-cache", got)
			}
		})
	}
}
