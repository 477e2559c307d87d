package web_test

import (
	"net/http"
	"testing"

	"vmsauth/auth"
	"vmsauth/web"
)

const ownPasswordPath = "/api/admin/v1/auth/password"

// TestChangeOwnPassword covers POST /api/admin/v1/auth/password: the
// caller proves their current password, and every session of theirs ends.
func TestChangeOwnPassword(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		e := newEnv(t)
		u := e.addUser("tech", allAPIs, auth.PermUsersView)
		tok, _ := e.adminLogin("tech")
		other, _ := e.adminLogin("tech")
		client, _ := e.clientLogin("tech")
		integration, _ := e.integrationLogin("tech")

		r := e.do("POST", ownPasswordPath, map[string]string{"current_password": "password1", "password": "brand-new-pass"}, authz(tok)...)
		wantJSON(t, r, http.StatusOK, `{"status":"ok"}`)

		for _, tk := range []string{tok, other} {
			wantStatus(t, e.do("GET", "/api/admin/v1/auth/user", nil, authz(tk)...), http.StatusUnauthorized)
		}
		wantStatus(t, e.do("GET", "/api/v1/users/self", nil, authz(client)...), http.StatusUnauthorized)
		wantStatus(t, e.do("GET", "/v1/me", nil, authz(integration)...), http.StatusUnauthorized)
		if s, err := e.DB.UserSessions(u.ID); err != nil || len(s) != 0 {
			t.Fatalf("sessions after the change: %d, %v", len(s), err)
		}
		wantStatus(t, e.do("POST", "/api/admin/v1/auth/token", map[string]string{"login": "tech", "password": "password1"}), http.StatusUnprocessableEntity)
		wantStatus(t, e.do("POST", "/api/admin/v1/auth/token", map[string]string{"login": "tech", "password": "brand-new-pass"}), http.StatusOK)
	})

	t.Run("ErrWrongCurrent", func(t *testing.T) {
		e := newEnv(t)
		e.addUser("tech", adminAPI)
		tok, _ := e.adminLogin("tech")
		before := e.snapshot(t)
		r := e.do("POST", ownPasswordPath, map[string]string{"current_password": "guess-1234", "password": "brand-new-pass"}, authz(tok)...)
		wantInvalid(t, r, map[string][]string{"current_password": {"The current password is incorrect."}})
		r = e.do("POST", ownPasswordPath, map[string]string{"current_password": "guess-1234", "password": "brand-new-pass"}, authz(tok, "Hl", "ru")...)
		wantJSON(t, r, http.StatusUnprocessableEntity, `{"message":"Переданные данные некорректны.","errors":{"current_password":["Неверно указан текущий пароль."]}}`)
		if after := e.snapshot(t); after != before {
			t.Fatalf("a wrong current password changed the store")
		}
		wantStatus(t, e.do("GET", "/api/admin/v1/auth/user", nil, authz(tok)...), http.StatusOK)
	})

	t.Run("ErrValidation", func(t *testing.T) {
		e := newEnv(t)
		e.addUser("tech", adminAPI)
		tok, _ := e.adminLogin("tech")
		before := e.snapshot(t)
		wantInvalid(t, e.do("POST", ownPasswordPath, map[string]any{}, authz(tok)...), map[string][]string{
			"current_password": {"The current password field is required."},
			"password":         {"The password field is required."},
		})
		r := e.do("POST", ownPasswordPath, map[string]any{"current_password": "password1", "password": "short"}, authz(tok)...)
		wantStatus(t, r, http.StatusUnprocessableEntity)
		if _, ok := object(t, "errors", r.JSON(t)["errors"])["password"]; !ok {
			t.Fatalf("short password: %s", r.Body)
		}
		if after := e.snapshot(t); after != before {
			t.Fatalf("refused changes changed the store")
		}
	})

	t.Run("ErrNotAllowed", func(t *testing.T) {
		e := newEnv(t)
		e.addUserWith("tech", adminAPI, func(u *auth.User) { u.CanUpdatePassword = false })
		tok, _ := e.adminLogin("tech")
		r := e.do("POST", ownPasswordPath, map[string]string{"current_password": "password1", "password": "brand-new-pass"}, authz(tok)...)
		wantMessage(t, r, http.StatusForbidden, "This action is unauthorized.")
		wantStatus(t, e.do("POST", "/api/admin/v1/auth/token", map[string]string{"login": "tech", "password": "password1"}), http.StatusOK)
	})

	t.Run("ErrUnauthenticated", func(t *testing.T) {
		e := newEnv(t)
		e.addUser("cam", allAPIs)
		client, _ := e.clientLogin("cam")
		body := map[string]string{"current_password": "password1", "password": "brand-new-pass"}
		wantMessage(t, e.do("POST", ownPasswordPath, body), http.StatusUnauthorized, "Unauthenticated.")
		wantMessage(t, e.do("POST", ownPasswordPath, body, authz(client)...), http.StatusUnauthorized, "Unauthenticated.")
	})

	// A stolen admin token must not guess the password faster than the
	// login form: wrong current passwords count as failed logins.
	t.Run("ErrThrottled", func(t *testing.T) {
		e := newEnv(t, func(a *auth.Config, w *web.Options) {
			w.Throttle = auth.NewThrottle(auth.ThrottleConfig{IPLimit: 100, LoginLimit: 3, Now: a.Now})
		})
		e.addUser("tech", adminAPI)
		tok, _ := e.adminLogin("tech")
		guess := func(pw string) response {
			return e.do("POST", ownPasswordPath, map[string]string{"current_password": pw, "password": "brand-new-pass"}, authz(tok)...)
		}
		// Input that tries no password does not count.
		for range 5 {
			wantStatus(t, e.do("POST", ownPasswordPath, map[string]string{"current_password": "guess"}, authz(tok)...), http.StatusUnprocessableEntity)
		}
		for i := range 3 {
			r := guess("guess-" + string(rune('a'+i)) + "-long")
			wantStatus(t, r, http.StatusUnprocessableEntity)
		}
		r := guess("password1")
		wantMessage(t, r, http.StatusTooManyRequests, "Too Many Attempts.")
		if r.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
		// The same budget holds the login form.
		wantStatus(t, e.do("POST", "/api/admin/v1/auth/token", map[string]string{"login": "tech", "password": "password1"}), http.StatusTooManyRequests)
		e.Clock.Advance(auth.DefaultWindow)
		wantJSON(t, guess("password1"), http.StatusOK, `{"status":"ok"}`)
	})
}

// snapshot is every stored user and session of an env.
func (e *env) snapshot(t *testing.T) string {
	t.Helper()
	return (&authzFixture{env: e}).snapshot(t)
}
