package web_test

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"vmsauth/auth"
	"vmsauth/store"
)

// Issue 12, "Ending a session ends everything that grew from it".

// wantChainEnded fails the test unless no token of an integration chain
// opens /v1/me any more and its refresh token mints nothing.
func (e *env) wantChainEnded(t *testing.T, refresh string, tokens ...string) {
	t.Helper()
	for i, tok := range tokens {
		if r := e.withT(t).do("GET", "/v1/me", nil, authz(tok)...); r.Status != http.StatusUnauthorized {
			t.Errorf("token %d of the chain: status %d, want 401", i, r.Status)
		}
	}
	wantCode(t, e.withT(t).do("POST", "/v1/token/refresh", map[string]any{"refresh_token": refresh}), codeTokenInvalid)
}

// root is an admin holding every permission, and its admin token.
func (e *env) root() (*auth.User, string) {
	e.t.Helper()
	u := e.addUser("root", allAPIs, auth.AllPermissionNames()...)
	tok, _ := e.adminLogin("root")
	return u, tok
}

func TestEndingIntegrationSessionEndsChain(t *testing.T) {
	// A chain: a login, then one refresh. Ending the newest session must
	// end both tokens and the refresh token that came with the newest.
	chain := func(e *env) (first, second, refresh string) {
		e.t.Helper()
		first, rt := e.integrationLogin("alice")
		r := e.do("POST", "/v1/token/refresh", map[string]any{"refresh_token": rt})
		wantStatus(e.t, r, http.StatusOK)
		b := r.JSON(e.t)
		return first, b["token"].(string), b["refresh_token"].(string)
	}
	t.Run("AdminEndsSession", func(t *testing.T) {
		e := newEnv(t)
		e.addUser("alice", allAPIs)
		_, root := e.root()
		first, second, rt := chain(e)
		other, otherRT := e.integrationLogin("alice") // another login: its own chain
		client, _ := e.clientLogin("alice")
		id := auth.HashToken(second).SessionID()
		wantJSON(t, e.do("DELETE", "/api/admin/v1/sessions/"+id, nil, authz(root)...), http.StatusOK, `{"status":"ok"}`)
		e.wantChainEnded(t, rt, first, second)
		wantStatus(t, e.do("GET", "/v1/me", nil, authz(other)...), http.StatusOK)
		wantStatus(t, e.do("GET", "/api/v1/users/self", nil, authz(client)...), http.StatusOK)
		wantStatus(t, e.do("POST", "/v1/token/refresh", map[string]any{"refresh_token": otherRT}), http.StatusOK)
	})
	t.Run("Logout", func(t *testing.T) {
		e := newEnv(t)
		e.addUser("alice", allAPIs)
		first, second, rt := chain(e)
		other, _ := e.integrationLogin("alice")
		wantJSON(t, e.do("POST", "/v1/logout", nil, authz(second)...), http.StatusOK, `{"status":"ok"}`)
		e.wantChainEnded(t, rt, first, second)
		wantStatus(t, e.do("GET", "/v1/me", nil, authz(other)...), http.StatusOK)
	})
}

func TestIntegrationLogoutErrors(t *testing.T) {
	e := newEnv(t)
	e.addUser("alice", allAPIs)
	expired, _ := e.integrationLogin("alice")
	e.Clock.Advance(25 * time.Hour)
	client, _ := e.clientLogin("alice")
	tests := []struct {
		name    string
		headers []string
		code    int
	}{
		{"ErrMissing", nil, codeTokenMissing},
		{"ErrGarbage", authz("garbage"), codeTokenInvalid},
		{"ErrClientToken", authz(client), codeTokenInvalid},
		{"ErrExpired", authz(expired), codeTokenExpired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantCode(t, e.withT(t).do("POST", "/v1/logout", nil, tc.headers...), tc.code)
		})
	}
	// The client token is not an integration token, so it was left alone.
	wantStatus(t, e.do("GET", "/api/v1/users/self", nil, authz(client)...), http.StatusOK)
}

// Taking access away ends the tokens it let be made: giving it back must
// not bring them back to life.
func TestTakingAccessAwayEndsSessions(t *testing.T) {
	patch := func(e *env, root string, id int64, body map[string]any) {
		e.t.Helper()
		wantStatus(e.t, e.do("PATCH", fmt.Sprintf("/api/admin/v1/users/%d", id), body, authz(root)...), http.StatusOK)
	}
	t.Run("APIRemoved", func(t *testing.T) {
		e := newEnv(t)
		alice := e.addUser("alice", allAPIs)
		_, root := e.root()
		client, _ := e.clientLogin("alice")
		admin, _ := e.adminLogin("alice")
		integ, rt := e.integrationLogin("alice")

		patch(e, root, alice.ID, map[string]any{"apis": []string{"admin"}})
		patch(e, root, alice.ID, map[string]any{"apis": []string{"client", "admin", "integration"}})

		wantStatus(t, e.do("GET", "/api/v1/users/self", nil, authz(client)...), http.StatusUnauthorized)
		e.wantChainEnded(t, rt, integ)
		// The API that stayed keeps its session.
		wantStatus(t, e.do("GET", "/api/admin/v1/auth/user", nil, authz(admin)...), http.StatusOK)
	})
	t.Run("ExpiredInThePast", func(t *testing.T) {
		e := newEnv(t)
		alice := e.addUser("alice", allAPIs)
		_, root := e.root()
		client, _ := e.clientLogin("alice")
		admin, _ := e.adminLogin("alice")
		integ, rt := e.integrationLogin("alice")

		patch(e, root, alice.ID, map[string]any{"expired_at": stamp(e.Clock.Now().Add(-time.Hour))})
		patch(e, root, alice.ID, map[string]any{"expired_at": nil})

		wantStatus(t, e.do("GET", "/api/v1/users/self", nil, authz(client)...), http.StatusUnauthorized)
		wantStatus(t, e.do("GET", "/api/admin/v1/auth/user", nil, authz(admin)...), http.StatusUnauthorized)
		e.wantChainEnded(t, rt, integ)
	})
	t.Run("ExpiryPassedThenExtended", func(t *testing.T) {
		// The date passes with no one touching the account; the admin
		// who extends it gives back the account, not its old tokens.
		e := newEnv(t)
		alice := e.addUserWith("alice", allAPIs, func(u *auth.User) {
			at := e.Clock.Now().Add(time.Hour)
			u.ExpiredAt = &at
		})
		_, root := e.root()
		client, _ := e.clientLogin("alice")
		e.Clock.Advance(2 * time.Hour)
		wantStatus(t, e.do("GET", "/api/v1/users/self", nil, authz(client)...), http.StatusUnauthorized)
		patch(e, root, alice.ID, map[string]any{"expired_at": stamp(e.Clock.Now().Add(30 * 24 * time.Hour))})
		wantStatus(t, e.do("GET", "/api/v1/users/self", nil, authz(client)...), http.StatusUnauthorized)
		e.clientLogin("alice") // the account itself works again
	})
	t.Run("ExpiryInTheFutureKeepsSessions", func(t *testing.T) {
		e := newEnv(t)
		alice := e.addUser("alice", allAPIs)
		_, root := e.root()
		client, _ := e.clientLogin("alice")
		patch(e, root, alice.ID, map[string]any{"expired_at": stamp(e.Clock.Now().Add(time.Hour))})
		wantStatus(t, e.do("GET", "/api/v1/users/self", nil, authz(client)...), http.StatusOK)
	})
}

// hookStore runs a hook, once, just before the next session is written:
// in the window between a login's password check and its session.
type hookStore struct {
	*store.DB
	beforeCreate atomic.Pointer[func()]
}

func (h *hookStore) CreateSession(s *auth.Session, opt auth.CreateOptions) error {
	if f := h.beforeCreate.Swap(nil); f != nil {
		(*f)()
	}
	return h.DB.CreateSession(s, opt)
}

func TestPasswordChangeRacesLogin(t *testing.T) {
	var hooks *hookStore
	wrap := func(db *store.DB) auth.Store { hooks = &hookStore{DB: db}; return hooks }
	// during arranges for fn to run after the next login has verified its
	// password and before its session is written.
	during := func(fn func()) { hooks.beforeCreate.Store(&fn) }

	logins := []struct {
		name, path string
		body       map[string]any
		refused    func(t *testing.T, r response)
	}{
		{"Integration", "/v1/login_check", map[string]any{"username": "alice", "password": "password1"},
			func(t *testing.T, r response) { wantCode(t, r, codeBadCredentials) }},
		{"Client", "/api/v1/token", map[string]any{"login": "alice", "password": "password1"},
			func(t *testing.T, r response) {
				wantInvalid(t, r, map[string][]string{"login": {"These credentials do not match our records."}})
			}},
	}
	for _, l := range logins {
		t.Run(l.name+"AdminSetsPassword", func(t *testing.T) {
			e := newEnvOver(t, wrap)
			alice := e.addUser("alice", allAPIs)
			_, root := e.root()
			var changed response
			var changeErr error
			during(func() {
				changed, changeErr = e.send("POST", fmt.Sprintf("/api/admin/v1/users/%d/password", alice.ID),
					map[string]any{"password": "new-password1"}, authz(root)...)
			})
			r := e.do("POST", l.path, l.body)
			if changeErr != nil || changed.Status != http.StatusOK {
				t.Fatalf("password change: %d %v", changed.Status, changeErr)
			}
			l.refused(t, r)
			if sessions, _ := e.DB.UserSessions(alice.ID); len(sessions) != 0 {
				t.Fatalf("alice has %d sessions after her password changed", len(sessions))
			}
		})
		t.Run(l.name+"Disabled", func(t *testing.T) {
			e := newEnvOver(t, wrap)
			alice := e.addUser("alice", allAPIs)
			during(func() {
				if _, err := e.Svc.SetDisabled(auth.Root, alice.ID, true); err != nil {
					t.Error(err)
				}
			})
			r := e.do("POST", l.path, l.body)
			if r.Status == http.StatusOK {
				t.Fatalf("a login that raced the disabling got a token: %s", r.Body)
			}
			if sessions, _ := e.DB.UserSessions(alice.ID); len(sessions) != 0 {
				t.Fatalf("alice has %d sessions after she was disabled", len(sessions))
			}
		})
	}
	t.Run("RehashIsNoPasswordChange", func(t *testing.T) {
		// The same password hashed again (as after a cost change) while a
		// login checks it: the login verifies again and succeeds.
		e := newEnvOver(t, wrap)
		alice := e.addUser("alice", allAPIs)
		during(func() {
			h, err := bcrypt.GenerateFromPassword([]byte("password1"), bcrypt.MinCost)
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := e.DB.UpdateUser(alice.ID, func(u *auth.User) ([]auth.API, error) {
				u.PasswordHash = string(h)
				return nil, nil
			}); err != nil {
				t.Error(err)
			}
		})
		wantStatus(t, e.do("POST", "/api/v1/token", map[string]any{"login": "alice", "password": "password1"}), http.StatusOK)
	})
}
