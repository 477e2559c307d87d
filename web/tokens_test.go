package web_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"vmsauth/auth"
	"vmsauth/internal/testkit"
)

// SPEC §4: using tokens, /auth/verify for the rest of the box, /healthz,
// and what tokens are made of.

func TestVerify(t *testing.T) {
	e := newEnv(t)
	alice := e.addUser("alice", allAPIs, "users-view", "cameras-view")
	bob := e.addUser("bob", clientAPI)
	tokens := map[string]string{"garbage": "garbage"}
	tokens["expired integration"], _ = e.integrationLogin("alice")
	e.Clock.Advance(24 * time.Hour)
	tokens["client"], _ = e.clientLogin("alice")
	tokens["admin"], _ = e.adminLogin("alice")
	tokens["integration"], _ = e.integrationLogin("alice")
	tokens["bob"], _ = e.clientLogin("bob")
	tokens["ended"], _ = e.clientLogin("alice")
	wantStatus(t, e.do("POST", "/api/v1/logout", nil, authz(tokens["ended"])...), http.StatusOK)

	const unauthenticated = `{"message":"Unauthenticated."}`
	tests := []struct {
		name  string
		token string // key of tokens; "" sends none
		query string
		// status and exact body; for 200 also the user's headers.
		status int
		body   string
		user   *auth.User
		realm  string
	}{
		{"OKClient", "client", "", http.StatusOK, `{"status":"ok"}`, alice, "client"},
		{"OKAdmin", "admin", "", http.StatusOK, `{"status":"ok"}`, alice, "admin"},
		{"OKIntegration", "integration", "", http.StatusOK, `{"status":"ok"}`, alice, "integration"},
		{"OKNoPermissions", "bob", "", http.StatusOK, `{"status":"ok"}`, bob, "client"},
		{"ErrMissing", "", "", http.StatusUnauthorized, unauthenticated, nil, ""},
		{"ErrGarbage", "garbage", "", http.StatusUnauthorized, unauthenticated, nil, ""},
		{"ErrEnded", "ended", "", http.StatusUnauthorized, unauthenticated, nil, ""},
		{"ErrExpired", "expired integration", "", http.StatusUnauthorized, unauthenticated, nil, ""},

		{"OKPermissionHeld", "client", "?permission=users-view", http.StatusOK, `{"status":"ok"}`, alice, "client"},
		{"ErrPermissionLacking", "bob", "?permission=users-view", http.StatusForbidden, `{"message":"This action is unauthorized."}`, nil, ""},
		{"ErrPermissionUnknown", "client", "?permission=no-such-thing", http.StatusForbidden, `{"message":"This action is unauthorized."}`, nil, ""},
		{"ErrPermissionWithoutToken", "", "?permission=users-view", http.StatusUnauthorized, unauthenticated, nil, ""},

		{"OKAPIClient", "client", "?api=client", http.StatusOK, `{"status":"ok"}`, alice, "client"},
		{"OKAPIIntegration", "integration", "?api=integration&permission=cameras-view", http.StatusOK, `{"status":"ok"}`, alice, "integration"},
		{"ErrAPIClientAdminToken", "admin", "?api=client", http.StatusUnauthorized, unauthenticated, nil, ""},
		{"ErrAPIAdminClientToken", "client", "?api=admin", http.StatusUnauthorized, unauthenticated, nil, ""},
		{"ErrAPIIntegrationGarbage", "garbage", "?api=integration", http.StatusUnauthorized,
			`{"errors":[{"error":1007,"message":"Your token is invalid."}]}`, nil, ""},
		{"ErrAPIIntegrationClientToken", "client", "?api=integration", http.StatusUnauthorized,
			`{"errors":[{"error":1007,"message":"Your token is invalid."}]}`, nil, ""},
		{"ErrAPIIntegrationMissing", "", "?api=integration", http.StatusUnauthorized,
			`{"errors":[{"error":1008,"message":"Missing token."}]}`, nil, ""},
		{"ErrAPIIntegrationExpired", "expired integration", "?api=integration", http.StatusUnauthorized,
			`{"errors":[{"error":1009,"message":"Your token is expired."}]}`, nil, ""},
		{"ErrAPIUnknown", "client", "?api=ftp", http.StatusBadRequest,
			`{"message":"The api parameter must be client, admin or integration."}`, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var headers []string
			if tc.token != "" {
				headers = authz(tokens[tc.token])
			}
			r := e.withT(t).do("GET", "/auth/verify"+tc.query, nil, headers...)
			wantJSON(t, r, tc.status, tc.body)
			if tc.user == nil {
				if id := r.Header.Get("X-Auth-User-Id"); id != "" {
					t.Errorf("a refused request got X-Auth-User-Id %q", id)
				}
				return
			}
			want := map[string]string{
				"X-Auth-User-Id":     strconv.FormatInt(tc.user.ID, 10),
				"X-Auth-Login":       tc.user.Login,
				"X-Auth-Realm":       tc.realm,
				"X-Auth-Permissions": strings.Join(tc.user.Permissions, ","),
			}
			for k, v := range want {
				if got := r.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
	// With api=integration every error is in seed 002's envelope, a
	// missing permission too.
	t.Run("ErrAPIIntegrationPermissionLacking", func(t *testing.T) {
		r := e.withT(t).do("GET", "/auth/verify?api=integration&permission=servers-update", nil, authz(tokens["integration"])...)
		wantStatus(t, r, http.StatusForbidden)
		errs, _ := r.JSON(t)["errors"].([]any)
		if len(errs) != 1 {
			t.Fatalf("body = %s, want seed 002's envelope with one error", r.Body)
		}
		wantKeys(t, "error", errs[0], "error", "message")
		if code := errs[0].(map[string]any)["error"]; code != 403.0 {
			t.Errorf("error = %v, want 403 (the status, as for other errors without a seed code)", code)
		}
	})
	// The comma list in catalog order, spelled out once.
	r := e.do("GET", "/auth/verify", nil, authz(tokens["client"])...)
	if got := r.Header.Get("X-Auth-Permissions"); got != "cameras-view,users-view" {
		t.Errorf("X-Auth-Permissions = %q, want cameras-view,users-view", got)
	}
}

// A token /auth/verify accepted must be refused at once when its user is
// locked out.
func TestVerifyFollowsAccount(t *testing.T) {
	e := newEnv(t)
	alice := e.addUser("alice", allAPIs, "users-view")
	client, _ := e.clientLogin("alice")
	wantStatus(t, e.do("GET", "/auth/verify?permission=users-view", nil, authz(client)...), http.StatusOK)
	if _, err := e.Svc.Revoke(auth.Root, alice.ID, []string{"users-view"}); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, e.do("GET", "/auth/verify?permission=users-view", nil, authz(client)...), http.StatusForbidden)
	if _, err := e.Svc.SetDisabled(auth.Root, alice.ID, true); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, e.do("GET", "/auth/verify", nil, authz(client)...), http.StatusUnauthorized)
}

func TestHealthz(t *testing.T) {
	e := newEnv(t)
	wantJSON(t, e.do("GET", "/healthz", nil), http.StatusOK, `{"status":"ok"}`)
}

// issueAll logs alice in on every API and returns every secret issued:
// the client, admin and integration tokens and the refresh token, plus a
// refreshed pair.
func issueAll(e *env) map[string]string {
	e.t.Helper()
	out := map[string]string{}
	out["client"], _ = e.clientLogin("alice")
	out["admin"], _ = e.adminLogin("alice")
	out["integration"], out["refresh"] = e.integrationLogin("alice")
	r := e.do("POST", "/v1/token/refresh", map[string]any{"refresh_token": out["refresh"]})
	wantStatus(e.t, r, http.StatusOK)
	body := r.JSON(e.t)
	out["refreshed"], out["refreshed refresh"] = body["token"].(string), body["refresh_token"].(string)
	return out
}

// Tokens carry at least 256 bits.
func TestTokenEntropy(t *testing.T) {
	e := newEnv(t)
	e.addUser("alice", allAPIs)
	seen := map[string]bool{}
	for name, tok := range issueAll(e) {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil {
			t.Errorf("%s token %q is not base64url: %v", name, tok, err)
			continue
		}
		if len(b) < 32 {
			t.Errorf("%s token holds %d bytes, want at least 32", name, len(b))
		}
		if seen[tok] {
			t.Errorf("%s token issued twice", name)
		}
		seen[tok] = true
	}
}

// Only a hash of each token is stored: the raw database file holds the
// hash and never the token.
func TestStoreKeepsOnlyHashes(t *testing.T) {
	e := newEnv(t)
	e.addUser("alice", allAPIs)
	secrets := issueAll(e)
	db, err := os.ReadFile(e.DB.Path())
	if err != nil {
		t.Fatal(err)
	}
	for name, tok := range secrets {
		if bytes.Contains(db, []byte(tok)) {
			t.Errorf("the database file holds the %s token", name)
		}
		// The check above sees what is stored: the token's hash is there.
		h := sha256.Sum256([]byte(tok))
		if !bytes.Contains(db, []byte(hex.EncodeToString(h[:]))) && !bytes.Contains(db, h[:]) {
			t.Errorf("the database file lacks the hash of the %s token", name)
		}
	}
}

// The session's address is the TCP peer unless that peer is a trusted
// proxy.
func TestClientIP(t *testing.T) {
	tests := []struct {
		name    string
		opts    []envOption
		loginIP string // the session's address after a login via X-Forwarded-For 203.0.113.9
		laterIP string // and after a request via X-Forwarded-For 198.51.100.4
	}{
		{"SpoofedForwardedForIgnored", nil, "127.0.0.1", "127.0.0.1"},
		{"TrustedProxy", []envOption{withTrustedProxies("127.0.0.1/32")}, "203.0.113.9", "198.51.100.4"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.opts...)
			e.addUser("alice", clientAPI)
			tok, _ := e.clientLogin("alice", "X-Forwarded-For", "203.0.113.9")
			if ip := e.sessionOf(tok).IP; ip != tc.loginIP {
				t.Errorf("after login: ip %q, want %q", ip, tc.loginIP)
			}
			r := e.do("GET", "/api/v1/sessions", nil, authz(tok, "X-Forwarded-For", "198.51.100.4")...)
			wantStatus(t, r, http.StatusOK)
			if ip := e.sessionOf(tok).IP; ip != tc.laterIP {
				t.Errorf("after a request: stored ip %q, want %q", ip, tc.laterIP)
			}
			if ip := object(t, "session", list(t, "sessions", mustDecode(t, r.Body))[0])["ip"]; ip != tc.laterIP {
				t.Errorf("listed ip %q, want %q", ip, tc.laterIP)
			}
		})
	}
}

// Logs name the login and the address of a failure, and never hold a
// password or a token.
func TestLogsHoldNoSecrets(t *testing.T) {
	var logs testkit.LogBuffer
	e := newEnv(t, withLog(&logs))
	e.addUser("alice", allAPIs)
	const wrong = "wrong-secret-pw"
	wantStatus(t, e.do("POST", "/api/v1/token", creds("alice", wrong)), http.StatusUnprocessableEntity)
	wantStatus(t, e.do("POST", "/api/admin/v1/auth/token", creds("alice", wrong)), http.StatusUnprocessableEntity)
	wantStatus(t, e.do("POST", "/v1/login_check", map[string]any{"username": "alice", "password": wrong}), http.StatusUnauthorized)
	secrets := issueAll(e)
	// Reuse a refresh token (logged as a warning) and send tokens around,
	// also in the query string.
	wantStatus(t, e.do("POST", "/v1/token/refresh", map[string]any{"refresh_token": secrets["refresh"]}), http.StatusUnauthorized)
	for _, tok := range secrets {
		e.do("GET", "/auth/verify?token="+tok, nil, authz(tok)...)
	}
	secrets["password"], secrets["wrong password"] = "password1", wrong

	out := logs.String()
	for _, want := range []string{"alice", "127.0.0.1", "login failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %q:\n%s", want, out)
		}
	}
	for name, secret := range secrets {
		if strings.Contains(out, secret) {
			t.Errorf("logs hold the %s", name)
		}
	}
}
