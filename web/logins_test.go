package web_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"vmsauth/auth"
	"vmsauth/web"
)

// Issue 12, "Logins are what they look like": each of these was accepted
// next to "admin", and the first two render exactly as "admin".
func TestNewLoginRules(t *testing.T) {
	e := newEnv(t)
	e.addUser("admin", allAPIs, auth.AllPermissionNames()...)
	e.addUser("cap", clientAPI)
	root, _ := e.adminLogin("admin")

	const (
		chars     = "The login may contain only letters, digits and @ . _ - + (no spaces, invisible or control characters, no accents on their own)."
		script    = "The login must use letters of one script only (all Latin, or all Cyrillic...)."
		lookalike = "The login looks like an existing login."
		taken     = "The login has already been taken."
	)
	refused := []struct {
		name, login, want string
	}{
		{"ErrZeroWidthSpace", "ad\u200bmin", chars},
		{"ErrSoftHyphen", "admin\u00ad", chars},
		{"ErrCyrillicA", "\u0430dmin", script},
		{"ErrFullWidth", "ａｄｍｉｎ", taken},
		{"ErrUpperCase", "ADMIN", taken},
		{"ErrDotlessI", "adm\u0131n", lookalike},
		{"ErrCombiningAccent", "admi\u0301n", lookalike},
		{"ErrPrecomposedAccent", "admín", lookalike},
		{"ErrStackedAccents", "adm\u0301\u0301\u0301in", chars},
		{"ErrAllCyrillicLookalike", "\u0441\u0430\u0440", lookalike}, // сар
		{"ErrSpace", "ad min", chars},
		{"ErrSymbol", "admin!", chars},
		{"ErrArabicIndicDigit", "user\u0663", chars},
		{"ErrGreekAndLatin", "\u03b1lpha", script},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			r := e.withT(t).do("POST", "/api/admin/v1/users", map[string]any{"login": tc.login, "password": "password1"}, authz(root)...)
			wantInvalid(t, r, map[string][]string{"login": {tc.want}})
		})
	}
	users, err := e.Svc.Users(t.Context())
	if err != nil || len(users) != 2 {
		t.Fatalf("refused logins were stored: %d users, %v", len(users), err)
	}

	accepted := []struct {
		name, login, stored string
	}{
		{"OKCyrillic", "Петя", "петя"},
		{"OKEmail", "John.Doe+cam@Example.com", "john.doe+cam@example.com"},
		{"OKAccented", "Ärger", "ärger"},
		{"OKFullWidthNew", "ｃａｍ１", "cam1"},
	}
	for _, tc := range accepted {
		t.Run(tc.name, func(t *testing.T) {
			r := e.withT(t).do("POST", "/api/admin/v1/users", map[string]any{"login": tc.login, "password": "password1"}, authz(root)...)
			wantStatus(t, r, http.StatusCreated)
			if got := r.JSON(t)["login"]; got != tc.stored {
				t.Fatalf("login stored as %q, want %q", got, tc.stored)
			}
			// The login as typed, and as prepared, both find the user.
			e.withT(t).clientLogin(tc.login)
			e.withT(t).clientLogin(tc.stored)
		})
	}
}

// Lookup prepares the login the same way, so "ＡＤＭＩＮ" finds "admin"; a
// login stored before the rules is still found as it was typed.
func TestLoginLookup(t *testing.T) {
	e := newEnv(t)
	e.addUser("admin", allAPIs)
	now := time.Now()
	legacy := &auth.User{Login: "Ｏｌｄ\u200b", Name: "Old", APIs: allAPIs, CreatedAt: now, UpdatedAt: now}
	legacy.PasswordHash = e.addUser("hashsource", clientAPI).PasswordHash
	if err := e.DB.CreateUser(t.Context(), legacy); err != nil {
		t.Fatal(err)
	}
	for _, typed := range []string{"admin", "ADMIN", "ＡＤＭＩＮ", "ａｄｍｉｎ"} {
		t.Run(typed, func(t *testing.T) {
			_, body := e.withT(t).clientLogin(typed)
			if got := object(t, "user", body["user"])["login"]; got != "admin" {
				t.Fatalf("%q logged in as %q", typed, got)
			}
		})
	}
	t.Run("Legacy", func(t *testing.T) {
		_, body := e.withT(t).clientLogin("ｏｌｄ\u200b")
		if got := object(t, "user", body["user"])["login"]; got != legacy.Login {
			t.Fatalf("logged in as %q, want the legacy user", got)
		}
	})
	t.Run("ErrInvisibleTyped", func(t *testing.T) {
		// An invisible character typed into a login finds nobody.
		r := e.withT(t).do("POST", "/api/v1/token", map[string]any{"login": "ad\u200bmin", "password": "password1"})
		wantInvalid(t, r, map[string][]string{"login": {"These credentials do not match our records."}})
	})
}

// Display names refuse the characters that reorder text, with which a
// name could show as another in the admin page and the audit.
func TestNameBidiControls(t *testing.T) {
	e := newEnv(t)
	alice := e.addUser("admin", allAPIs, auth.AllPermissionNames()...)
	root, _ := e.adminLogin("admin")
	const want = "The name may not contain characters that change the direction of text."
	for _, r := range []rune{0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069} {
		name := "Mallory" + string(r) + "exe.txt"
		t.Run(fmt.Sprintf("U+%04X", r), func(t *testing.T) {
			wantInvalid(t, e.withT(t).do("POST", "/api/admin/v1/users", map[string]any{"login": "mallory", "name": name, "password": "password1"}, authz(root)...),
				map[string][]string{"name": {want}})
			wantInvalid(t, e.withT(t).do("PATCH", "/api/admin/v1/users/1", map[string]any{"name": name}, authz(root)...),
				map[string][]string{"name": {want}})
		})
	}
	if u, _ := e.Svc.User(t.Context(), alice.ID); u.Name != alice.Name {
		t.Fatalf("name changed to %q", u.Name)
	}
}

// Width and case variants of a login find the same user, so they count
// against the same throttle: otherwise each variant would buy 10 more
// guesses at one password.
func TestLoginVariantsShareThrottle(t *testing.T) {
	e := newEnv(t, func(a *auth.Config, w *web.Options) {
		w.Throttle = auth.NewThrottle(auth.ThrottleConfig{IPLimit: 1000, LoginLimit: 10, Now: a.Now})
	})
	e.addUser("alice", allAPIs)
	variants := []string{"ALICE", "ａｌｉｃｅ", "ＡＬＩＣＥ", "Alice", "ａlice", "aｌice", "alｉce", "aliｃe", "alicｅ", "ＡＬＩＣe"}
	for _, v := range variants {
		r := e.do("POST", "/api/admin/v1/auth/token", map[string]any{"login": v, "password": "wrong-password"})
		wantStatus(t, r, http.StatusUnprocessableEntity)
	}
	r := e.do("POST", "/api/admin/v1/auth/token", map[string]any{"login": "alice", "password": "password1"})
	wantStatus(t, r, http.StatusTooManyRequests)
}
